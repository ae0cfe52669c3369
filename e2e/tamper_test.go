//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"

	"github.com/datavolume/datavolume/pkg/cloneauth"
)

// tamperStoredGrant rewrites the clone grant of a stored DataVolume straight
// in datavolume-apiserver's etcd, past the API that keeps grants
// server-owned: as an attacker who reached the store, and stole its one
// client certificate, would.
func tamperStoredGrant(t *testing.T, ns, name string, tamper func(string) string) {
	t.Helper()
	ip := kubectl(t, "get", "pod", "datavolume-etcd-0", "-n", "datavolume-system", "-o", "jsonpath={.status.podIP}")
	tlsConfig, err := cluster.DataVolumeEtcdClientTLS()
	assert.NilError(t, err)
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + net.JoinHostPort(ip, "2379")}, TLS: tlsConfig, DialTimeout: 10 * time.Second})
	assert.NilError(t, err)
	defer client.Close()
	ctx, cancel := context.WithTimeout(testContext(t), 30*time.Second)
	defer cancel()
	// The key is found, not assumed: /registry/cdi.kubevirt.io/…/datavolumes/ns/name.
	keys, err := client.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	assert.NilError(t, err)
	key := ""
	for _, kv := range keys.Kvs {
		if strings.HasSuffix(string(kv.Key), "/datavolumes/"+ns+"/"+name) {
			key = string(kv.Key)
		}
	}
	assert.Assert(t, key != "", "no DataVolume %s/%s among %d keys in etcd", ns, name, len(keys.Kvs))
	got, err := client.Get(ctx, key)
	assert.NilError(t, err)
	assert.Equal(t, len(got.Kvs), 1, "no %s in etcd", key)
	var obj map[string]any
	assert.NilError(t, json.Unmarshal(got.Kvs[0].Value, &obj), "the DataVolume is stored as JSON")
	annotations := obj["metadata"].(map[string]any)["annotations"].(map[string]any)
	annotations[cloneauth.GrantAnnotation] = tamper(annotations[cloneauth.GrantAnnotation].(string))
	value, err := json.Marshal(obj)
	assert.NilError(t, err)
	txn, err := client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", got.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(key, string(value))).Commit()
	assert.NilError(t, err)
	assert.Assert(t, txn.Succeeded, "the DataVolume changed while it was tampered with")
}

// A grant changed in the store does not verify: the clone fails with
// CloneGrantInvalid, and nothing is made in either namespace.
func TestTamperedGrantFailsTheCloneAndMovesNothing(t *testing.T) {
	t.Parallel()
	s := newSeedClone(t, "t")
	src, dst, sa := s.src, s.dst, s.sa
	// The source stays unbound, so the clone waits (CloneSourceNotBound)
	// until the grant is changed under it.
	createClaim(t, "my-favorite-vm-disk", src, claimSize, "", "")
	out, err := sa.run(t, s.dataVolume, "create", "-n", dst, "-f", "-")
	assert.NilError(t, err, out)
	waitForReason(t, dst, "cloner-datavolume", "CloneSourceNotBound")

	// The grant of another target, made to look like this one's: the
	// payload's target name changed, the signature kept.
	tamperStoredGrant(t, dst, "cloner-datavolume", func(token string) string {
		fields := strings.Split(token, ".")
		assert.Assert(t, len(fields) == 4, token)
		payload, err := encodingOf(fields[2])
		assert.NilError(t, err)
		fields[2] = reencode(strings.Replace(payload, `"cloner-datavolume"`, `"another-datavolume"`, 1))
		return strings.Join(fields, ".")
	})
	waitFor(t, dst, "cloner-datavolume", "jsonpath={.status.phase}=Failed", 2*time.Minute)
	dv := getDV(t, dst, "cloner-datavolume")
	running := conditionOf(dv, "Running")
	assert.Check(t, is.Equal(running.Reason, "CloneGrantInvalid"))
	assert.Check(t, is.Contains(running.Message, "the clone grant does not allow this clone"), running.Message)
	assert.Check(t, is.Contains(eventsOf(t, dst, "cloner-datavolume"), "CloneFailed"))
	assert.Check(t, is.Equal(kubectl(t, "get", "job,pvc", "-n", src, "-l", "app.kubernetes.io/managed-by=datavolume-controller", "-o", "name"), ""))
	assert.Check(t, is.Equal(kubectl(t, "get", "pvc,job", "-n", dst, "-o", "name"), ""))
	assert.Check(t, is.Len(dv.Finalizers, 0))
}

// encodingOf and reencode read and write a token's base64url fields.
func encodingOf(field string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(field)
	return string(b), err
}

func reencode(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
