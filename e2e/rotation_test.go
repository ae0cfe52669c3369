//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// A grant key rotates without a restart, in the order that keeps every
// clone working: the new public key reaches the controller first, then the
// new private key becomes the apiserver's signing key; a clone signed with
// it moves its bytes. The old key stays, for other tests' grants.
func TestGrantKeyRotatesWithoutARestart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := t.TempDir()
	assert.NilError(t, cloneauth.GenerateKey(dir, "rotated"))
	private, err := os.ReadFile(filepath.Join(dir, "rotated"))
	assert.NilError(t, err)
	set, err := cloneauth.LoadKeySet(dir)
	assert.NilError(t, err)
	pems, err := set.Public().PEM()
	assert.NilError(t, err)

	// 1. The public key, and the private key not yet active.
	patch := func(kind, name, patch string) {
		t.Helper()
		out, err := cluster.Kubectl(ctx, "", "patch", kind, name, "-n", "datavolume-system", "--type=merge", "-p", patch)
		assert.NilError(t, err, out)
	}
	patch("configmap", "datavolume-clone-grant-public-keys", `{"data":{"rotated":`+jsonString(string(pems["rotated"]))+`}}`)
	eventually(t, 3*time.Minute, func() error {
		logs, _ := cluster.Kubectl(ctx, "", "logs", "-n", "datavolume-system", "-l", "app.kubernetes.io/name=datavolume-controller", "--tail=-1", "--prefix")
		if !strings.Contains(logs, "Grant keys reloaded") {
			return errorf("the controller has not reloaded its keys yet")
		}
		return nil
	})
	// 2. The new key signs.
	patch("secret", "datavolume-clone-grant-keys", `{"stringData":{"rotated":`+jsonString(string(private))+`,"active":"rotated"}}`)
	t.Cleanup(func() {
		// Back to the first key for the rest of the suite; the new one keeps verifying.
		_, _ = cluster.Kubectl(context.Background(), "", "patch", "secret", "datavolume-clone-grant-keys", "-n", "datavolume-system",
			"--type=merge", "-p", `{"stringData":{"active":"key-1"}}`)
	})

	s := newSeedClone(t, "k")
	src, dst, sa := s.src, s.dst, s.sa
	imgs := sourceWithDisk(t, src)
	// Each attempt is a new DataVolume, until one is signed with the new key.
	attempt := 0
	name := ""
	eventually(t, 3*time.Minute, func() error {
		attempt++
		name = "rotated-" + strings.Repeat("x", attempt)
		manifest := strings.Replace(s.dataVolume, "name: cloner-datavolume\n", "name: "+name+"\n", 1)
		if out, err := sa.run(t, manifest, "create", "-n", dst, "-f", "-"); err != nil {
			return errorf("%v: %s", err, out)
		}
		token := storedDataVolume(t, name, dst).Annotations[cloneauth.GrantAnnotation]
		if !strings.HasPrefix(token, "v2.rotated.") {
			return errorf("grant of %s signed with key %q", name, strings.SplitN(token, ".", 3)[1])
		}
		return nil
	})
	waitFor(t, dst, name, "condition=Ready", 3*time.Minute)
	assertImported(t, dst, name, imgs.raw)
	// Signed by the new key (the cluster's key directory on this host has only the first).
	dv := storedDataVolume(t, name, dst)
	grant, err := set.Verify(dv.Annotations[cloneauth.GrantAnnotation], cloneauth.Target{Namespace: dst, Name: name, UID: dv.UID,
		SourceNamespace: src, SourceName: "my-favorite-vm-disk"}, time.Now())
	assert.NilError(t, err)
	assert.Check(t, is.Equal(grant.Requester.GetName(), sa.name))
}
