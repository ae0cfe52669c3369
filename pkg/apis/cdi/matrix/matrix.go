// Package matrix is CDI's supported-operations matrix (the seed's 6.10.2.5),
// the one table of which content types may be imported from which
// endpoints, in which formats, with what scratch space. Validation refuses
// what it rules out, the plan reads the scratch space an import needs up
// front, and the cloner refuses the same combinations on its command line.
// It imports nothing, so the cloner reads the table without the API types.
package matrix

// ContentType is a DataVolume's spec.contentType, as ContentType
// spells it: the matrix's rows are grouped by it.
type ContentType string

// The content types of the matrix.
const (
	KubeVirt ContentType = "kubevirt"
	Archive  ContentType = "archive"
)

// Endpoint is where an import reads from, as the supported-operations matrix
// of CDI names it.
type Endpoint string

// The endpoints of the matrix.
const (
	EndpointHTTP          Endpoint = "http"
	EndpointHTTPS         Endpoint = "https"
	EndpointHTTPBasicAuth Endpoint = "http-basic-auth"
	EndpointRegistry      Endpoint = "registry"
	EndpointUpload        Endpoint = "upload"
)

// Format is the format of the bytes an endpoint serves.
type Format string

// The formats of the matrix. QCOW2 and RAW are kubevirt disk images; GZ and
// XZ wrap one of them; TAR is an archive.
const (
	FormatQCOW2 Format = "qcow2"
	FormatRAW   Format = "raw"
	FormatGZ    Format = "gz"
	FormatXZ    Format = "xz"
	FormatTAR   Format = "tar"
)

// Scratch says whether an import needs scratch space.
type Scratch string

// The scratch requirements of the matrix.
const (
	// ScratchNone: the import streams straight into the volume.
	ScratchNone Scratch = "none"
	// ScratchAlways: the image is staged on scratch space first (marked * in the matrix).
	ScratchAlways Scratch = "always"
	// ScratchCustomCA: scratch only when the server needs a custom CA (marked **).
	ScratchCustomCA Scratch = "custom-ca"
)

// Image is the kind of image a matrix row is about.
type Image string

// The rows of the matrix: kubevirt content as qcow2 or raw, and archives.
const (
	ImageQCOW2   Image = "kubevirt (QCOW2)"
	ImageRAW     Image = "kubevirt (RAW)"
	ImageArchive Image = "archive"
)

// matrixCell is one cell of the matrix: the formats that work, each with its
// scratch requirement. A cell without formats is "not supported".
type matrixCell map[Format]Scratch

// supportedOperations is the seed's "CDI supported operations matrix" (OpenShift
// Virtualization 6.10.2.5), the one place these rules live. Block volumes
// are ruled out for archives separately (BlockAllowed).
var supportedOperations = map[Image]map[Endpoint]matrixCell{
	ImageQCOW2: {
		EndpointHTTP:          {FormatQCOW2: ScratchNone, FormatGZ: ScratchAlways, FormatXZ: ScratchAlways},
		EndpointHTTPS:         {FormatQCOW2: ScratchCustomCA, FormatGZ: ScratchAlways, FormatXZ: ScratchAlways},
		EndpointHTTPBasicAuth: {FormatQCOW2: ScratchNone, FormatGZ: ScratchAlways, FormatXZ: ScratchAlways},
		EndpointRegistry:      {FormatQCOW2: ScratchAlways},
		EndpointUpload:        {FormatQCOW2: ScratchAlways, FormatGZ: ScratchAlways, FormatXZ: ScratchAlways},
	},
	ImageRAW: {
		EndpointHTTP:          {FormatRAW: ScratchNone, FormatGZ: ScratchNone, FormatXZ: ScratchNone},
		EndpointHTTPS:         {FormatRAW: ScratchNone, FormatGZ: ScratchNone, FormatXZ: ScratchNone},
		EndpointHTTPBasicAuth: {FormatRAW: ScratchNone, FormatGZ: ScratchNone, FormatXZ: ScratchNone},
		EndpointRegistry:      {FormatRAW: ScratchAlways},
		EndpointUpload:        {FormatRAW: ScratchAlways, FormatGZ: ScratchAlways, FormatXZ: ScratchAlways},
	},
	ImageArchive: {
		EndpointHTTP:          {FormatTAR: ScratchNone},
		EndpointHTTPS:         {FormatTAR: ScratchNone},
		EndpointHTTPBasicAuth: {FormatTAR: ScratchNone},
		EndpointRegistry:      {},
		EndpointUpload:        {},
	},
}

// Supported reports whether the matrix supports importing format from
// endpoint for an image of the given kind, and with what scratch space.
func Supported(image Image, endpoint Endpoint, format Format) (Scratch, bool) {
	scratch, ok := supportedOperations[image][endpoint][format]
	return scratch, ok
}

// imagesOf returns the matrix rows that hold content of the given type.
func imagesOf(contentType ContentType) []Image {
	if contentType == Archive {
		return []Image{ImageArchive}
	}
	return []Image{ImageQCOW2, ImageRAW}
}

// EndpointSupported reports whether any format of the content type can be
// imported from the endpoint: what can be decided before a byte is read.
func EndpointSupported(contentType ContentType, endpoint Endpoint) bool {
	for _, image := range imagesOf(contentType) {
		if len(supportedOperations[image][endpoint]) > 0 {
			return true
		}
	}
	return false
}

// BlockAllowed reports whether content of the type can go to a Block volume:
// an archive needs a filesystem to extract into.
func BlockAllowed(contentType ContentType) bool {
	return contentType != Archive
}

// CompressedSupported reports whether a gz or xz image of the content type
// may come from the endpoint (not from a registry: its images carry raw or
// qcow2 disks).
func CompressedSupported(contentType ContentType, endpoint Endpoint) bool {
	for _, image := range imagesOf(contentType) {
		cell := supportedOperations[image][endpoint]
		if _, gz := cell[FormatGZ]; gz {
			return true
		}
		if _, xz := cell[FormatXZ]; xz {
			return true
		}
	}
	return false
}

// AlwaysStaged reports whether every format the matrix supports for the
// content type from the endpoint is staged on scratch space first (registry
// and upload), so an import needs scratch before a byte is read.
func AlwaysStaged(contentType ContentType, endpoint Endpoint) bool {
	any := false
	for _, image := range imagesOf(contentType) {
		for _, scratch := range supportedOperations[image][endpoint] {
			if scratch != ScratchAlways {
				return false
			}
			any = true
		}
	}
	return any
}
