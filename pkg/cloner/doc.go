// Package cloner moves the data of a DataVolume: it imports an image from
// HTTP(S), an OCI registry or an upload into a filesystem or block volume,
// and clones one volume into another over mutual TLS.
//
// The work is split into small packages with one job each:
//
//   - httpsource, registry, upload: where bytes come from
//   - format: magic-byte sniffing and decompression (gzip, xz, zstd)
//   - qcow2, nbd: qcow2 header checks and conversion with qemu-img
//   - sink: writing a disk image sparsely into a file or block device
//   - archive: safe tar extraction into a filesystem volume
//   - importer: the pipeline that stacks sources, formats and sinks
//   - clone, certs: volume-to-volume transport over mutual TLS
//   - checksum, progress: verification and progress reporting
//   - cli: the datavolume-cloner subcommands (and which paths each writes)
//   - exitcode: the exit codes and termination message the controller
//     reads; it imports only the standard library
//
// Each package returns typed errors for the failures that decide what the
// controller does (errors.Is/As: sink.ErrTooLarge, checksum.ErrMismatch,
// archive.ErrUnsafeEntry, qcow2.ErrUnsafe/ErrInvalid/ErrUnsupported,
// importer.ErrUnsupportedFormat/ErrNeedsScratch/ErrSourceInconsistent,
// format.ErrMemoryLimit, httpsource.StatusError/ErrUnframed/
// ErrInsecureRedirect, ...); cli maps them to exit codes and reasons in
// one place.
package cloner
