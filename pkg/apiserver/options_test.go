package apiserver

import (
	"testing"

	"gotest.tools/v3/assert"
)

func TestPriorityAndFairnessIsOffUnlessAsked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--enable-priority-and-fairness=true"}, true},
	} {
		o := NewOptions()
		fss := o.Flags()
		fs := fss.FlagSet("features")
		assert.NilError(t, fs.Parse(tc.args))
		assert.Equal(t, o.Recommended.Features.EnablePriorityAndFairness, tc.want, "args %q", tc.args)
	}
}
