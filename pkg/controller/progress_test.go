package controller

import (
	"bufio"
	"strings"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/apis/cdi/v1beta1"
)

func TestParseProgressPrefersCDINames(t *testing.T) {
	text := `# HELP kubevirt_cdi_import_progress_total Import progress in percent.
# TYPE kubevirt_cdi_import_progress_total counter
kubevirt_cdi_import_progress_total{ownerUID="u"} 45.1234
datavolume_cloner_progress_percent{ownerUID="u"} 45
`
	got, err := parseProgress(bufio.NewScanner(strings.NewReader(text)))
	assert.NilError(t, err)
	assert.Equal(t, got, v1beta1.DataVolumeProgress("45.12%"))
}

func TestParseProgressUnknownTotal(t *testing.T) {
	got, err := parseProgress(bufio.NewScanner(strings.NewReader(`datavolume_cloner_progress_percent{ownerUID="u"} -1` + "\n")))
	assert.NilError(t, err)
	assert.Equal(t, got, v1beta1.DataVolumeProgress(""))
}
