//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
	corev1 "k8s.io/api/core/v1"
)

// Our components run as Pods of artifacts/deploy, from the images built on
// this machine, and are Ready on node01.
func TestComponentsRunAsPodsFromArtifactsDeploy(t *testing.T) {
	var pods corev1.PodList
	out := kubectl(t, "get", "pods", "-n", "datavolume-system", "-o", "json")
	assert.NilError(t, json.Unmarshal([]byte(out), &pods))
	ready := map[string]bool{}
	for _, pod := range pods.Items {
		app := pod.Labels["app.kubernetes.io/name"]
		assert.Check(t, is.Equal(pod.Spec.NodeName, "node01"), "pod %s", pod.Name)
		for _, c := range pod.Spec.Containers {
			assert.Check(t, strings.HasPrefix(c.Image, "datavolume.local/"), "pod %s runs %s, not an image built here", pod.Name, c.Image)
		}
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready[app] = true
			}
		}
	}
	for _, app := range []string{"datavolume-apiserver", "datavolume-webhook", "datavolume-etcd"} {
		assert.Check(t, ready[app], "no Ready pod of %s among %d", app, len(pods.Items))
	}
	// The etcd's data is on a claim bound to a local volume, not an emptyDir.
	claim := kubectl(t, "get", "pvc", "-n", "datavolume-system", "-o", "jsonpath={.items[*].status.phase} {.items[*].spec.storageClassName}")
	assert.Check(t, is.Equal(claim, "Bound local"))
	// Served through the aggregator from the pod.
	kubectl(t, "get", "dv", "-A")
}

// A Job writes through a filesystem claim on a local volume, and the bytes
// are on the host.
func TestJobWritesThroughFilesystemClaim(t *testing.T) {
	ns := namespace(t, "fsjob")
	dir := filesystemClaim(t, ns)
	runJob(t, ns, dataMount, `printf 'written by a Job on node01\n' > /data/hello && sync`)

	got, err := os.ReadFile(filepath.Join(dir, "hello"))
	assert.NilError(t, err)
	assert.Equal(t, string(got), "written by a Job on node01\n")
}

// The cloner, from its image, imports as a Job an xz-compressed disk served
// over HTTP from the host's address for pods into a filesystem claim: liblzma decodes
// a multi-block stream in the Pod, the file on the volume holds the disk's
// bytes then zeros up to the target size, and the zeros are holes. The same
// disk as qcow2 is mapped by the image's qemu-img and streamed.
func TestJobImportsDiskWithTheCloner(t *testing.T) {
	ns := namespace(t, "import")
	dir := filesystemClaim(t, ns)

	served := t.TempDir()
	disk := make([]byte, 16<<20)
	_, err := rand.Read(disk[:4<<20])
	assert.NilError(t, err)
	_, err = rand.Read(disk[12<<20:])
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(filepath.Join(served, "disk.raw"), disk, 0o644))
	for _, args := range [][]string{
		{"qemu-img", "convert", "-f", "raw", "-O", "qcow2", "disk.raw", "disk.qcow2"},
		{"xz", "-T2", "--block-size=1MiB", "-1", "disk.raw"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = served
		out, err := cmd.CombinedOutput()
		assert.NilError(t, err, string(out))
	}

	listener, err := net.Listen("tcp", net.JoinHostPort(cluster.HostAddressForPods().String(), "0"))
	assert.NilError(t, err)
	server := &http.Server{Handler: http.FileServer(http.Dir(served)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(func() { server.Close() })

	base := "http://" + listener.Addr().String()
	logs := runJob(t, ns, dataMount,
		"datavolume-cloner import --url "+base+"/disk.raw.xz --target /data/disk.img --target-size 64Mi && "+
			"datavolume-cloner import --url "+base+"/disk.qcow2 --target /data/qcow2.img --target-size 64Mi")
	assert.Assert(t, strings.Contains(logs, "streaming qcow2 data runs"), "the qcow2 image was streamed:\n%s", logs)

	for _, name := range []string{"disk.img", "qcow2.img"} {
		imported := filepath.Join(dir, name)
		got, err := os.ReadFile(imported)
		assert.NilError(t, err)
		assert.Equal(t, len(got), 64<<20, "%s fills the target size", name)
		assert.Assert(t, bytes.Equal(got[:len(disk)], disk), "%s holds the disk's bytes", name)
		assert.Assert(t, bytes.Count(got[len(disk):], []byte{0}) == len(got)-len(disk), "zeros after the disk in %s", name)
		var st syscall.Stat_t
		assert.NilError(t, syscall.Stat(imported, &st))
		assert.Assert(t, st.Blocks*512 <= 9<<20, "zeros are holes in %s: %d bytes allocated", name, st.Blocks*512)
	}
}

// A clone within one namespace runs in one pod that mounts both claims
// (`datavolume-cloner clone`): here a disk image in a filesystem claim is
// copied to a block claim whose device held other data before. The device
// must read back as the image followed by zeros.
func TestJobClonesFilesystemClaimToBlockClaim(t *testing.T) {
	ns := namespace(t, "clone")
	dir := filesystemClaim(t, ns)
	disk := make([]byte, 48<<20)
	_, err := rand.Read(disk[:8<<20])
	assert.NilError(t, err)
	_, err = rand.Read(disk[40<<20:])
	assert.NilError(t, err)
	assert.NilError(t, os.WriteFile(filepath.Join(dir, "disk.img"), disk, 0o644))

	device, err := cluster.AddBlockVolume(testContext(t), ns+"-target", "128Mi")
	assert.NilError(t, err)
	t.Cleanup(func() { _, _ = cluster.Kubectl(testContext(t), "", "delete", "pv", ns+"-target", "--wait=false") })
	old := bytes.Repeat([]byte{0xa5}, 128<<20)
	assert.NilError(t, os.WriteFile(device, old, 0))
	claim(t, ns, "target", "Block", "128Mi")

	logs := runJobWithClaims(t, ns, `volumeMounts:
            - name: data
              mountPath: /data
              readOnly: true
          volumeDevices:
            - name: target
              devicePath: /dev/target`, []string{"data", "target"},
		"datavolume-cloner clone --source /data/disk.img --target /dev/target")
	assert.Equal(t, kubectl(t, "get", "pvc", "target", "-n", ns, "-o", "jsonpath={.spec.volumeName}"), ns+"-target")

	got, err := os.ReadFile(device)
	assert.NilError(t, err, "job log:\n%s", logs)
	assert.Equal(t, len(got), 128<<20)
	assert.Assert(t, bytes.Equal(got[:len(disk)], disk), "the image's bytes, zero middle included; job log:\n%s", logs)
	assert.Assert(t, bytes.Count(got[len(disk):], []byte{0}) == len(got)-len(disk), "zeros after the image, not the old data")
}

// dataMount mounts the claim "data" at /data in runJob's container.
const dataMount = `volumeMounts:
            - name: data
              mountPath: /data`

// filesystemClaim makes a 1Gi local filesystem volume and binds the claim
// "data" of ns to it; it returns the volume's directory on the host.
func filesystemClaim(t *testing.T, ns string) string {
	t.Helper()
	dir, err := cluster.AddFilesystemVolume(testContext(t), ns+"-pv", "1Gi")
	assert.NilError(t, err)
	dataClaim(t, ns, "Filesystem", "1Gi")
	return dir
}

// dataClaim makes the claim "data" in ns, in the StorageClass "local".
func dataClaim(t *testing.T, ns, volumeMode, storage string) {
	t.Helper()
	claim(t, ns, "data", volumeMode, storage)
}

// claim makes the claim name in ns, in the StorageClass "local".
func claim(t *testing.T, ns, name, volumeMode, storage string) {
	t.Helper()
	claimYAML := `apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: ` + name + `
spec:
  accessModes: [ReadWriteOnce]
  volumeMode: ` + volumeMode + `
  storageClassName: local
  resources:
    requests:
      storage: ` + storage + `
`
	out, err := kubectlIn(t, claimYAML, "apply", "-n", ns, "-f", "-")
	assert.NilError(t, err, out)
}

// The seed's local block PV (6.10.4), on a loop device from `losetup -f`:
// a Job writes to the raw device through volumeDevices and the host reads
// the bytes back from the loop device.
func TestJobWritesThroughSeedBlockVolume(t *testing.T) {
	ns := namespace(t, "blockjob")
	device, err := cluster.AttachLoopDevice(testContext(t), ns, "2Gi")
	assert.NilError(t, err)
	seed, err := os.ReadFile(repoFile(t, "artifacts/examples/local-block-pv10.yaml"))
	assert.NilError(t, err)
	pv := strings.ReplaceAll(string(seed), "/dev/loop10", device)
	pv = strings.Replace(pv, "name: local-block-pv10", "name: "+ns+"-pv10", 1)
	out, err := kubectlIn(t, pv, "create", "-f", "-")
	assert.NilError(t, err, out)
	t.Cleanup(func() { _, _ = cluster.Kubectl(testContext(t), "", "delete", "pv", ns+"-pv10", "--wait=false") })

	dataClaim(t, ns, "Block", "2Gi")
	// Written at 1 MiB into the device, past where a filesystem would begin.
	runJob(t, ns, `volumeDevices:
            - name: data
              devicePath: /dev/xvda`, `printf 'block data from node01' | dd of=/dev/xvda bs=1M seek=1 conv=fsync,notrunc status=none`)
	assert.Equal(t, kubectl(t, "get", "pvc", "data", "-n", ns, "-o", "jsonpath={.spec.volumeName}"), ns+"-pv10")

	f, err := os.Open(device)
	assert.NilError(t, err)
	defer f.Close()
	want := []byte("block data from node01")
	got := make([]byte, len(want)+8)
	_, err = f.ReadAt(got, 1<<20)
	assert.NilError(t, err)
	assert.Check(t, bytes.Equal(got[:len(want)], want), "device holds %q", got)
	assert.Check(t, bytes.Equal(got[len(want):], make([]byte, 8)), "bytes after the write are not zero: %q", got)
}

// Pods resolve Services by name through the cluster DNS and reach them
// through kube-proxy: here the kubernetes Service, which leads to
// kube-apiserver on the host.
func TestPodsReachServicesByName(t *testing.T) {
	ns := namespace(t, "dns")
	clusterIP := kubectl(t, "get", "service", "kubernetes", "-n", "default", "-o", "jsonpath={.spec.clusterIP}")
	logs := runJob(t, ns, "", `getent hosts kubernetes.default.svc.cluster.local && timeout 5 bash -c '</dev/tcp/kubernetes.default.svc/443' && echo connected`)
	fields := strings.Fields(logs)
	assert.Assert(t, len(fields) >= 3, "job printed %q", logs)
	assert.Check(t, is.Equal(fields[0], clusterIP))
	assert.Check(t, is.Equal(fields[1], "kubernetes.default.svc.cluster.local"))
	assert.Check(t, is.Equal(fields[len(fields)-1], "connected"))
}

// Pods reach a server beyond this host (the host's own DNS server, when it
// is on another machine and answers TCP) through the node's link and the
// host's marked egress rules, as an import from the internet does.
func TestPodsReachOtherNetworksThroughTheHost(t *testing.T) {
	server := nonLoopbackNameserver(t)
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(server, "53"), 3*time.Second)
	if err != nil {
		t.Skipf("this host cannot reach %s:53 over TCP either: %v", server, err)
	}
	conn.Close()
	ns := namespace(t, "egress")
	logs := runJob(t, ns, "", `timeout 5 bash -c '</dev/tcp/`+server+`/53' && echo connected`)
	assert.Check(t, is.Equal(strings.TrimSpace(logs), "connected"))
}

// nonLoopbackNameserver is the first nameserver of this host's
// /etc/resolv.conf that is on another machine; the test is skipped without.
func nonLoopbackNameserver(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/etc/resolv.conf")
	assert.NilError(t, err)
	addrs, err := net.InterfaceAddrs()
	assert.NilError(t, err)
	local := map[string]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			local[n.IP.String()] = true
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if ip := net.ParseIP(f[1]); ip != nil && ip.To4() != nil && !ip.IsLoopback() && !local[ip.String()] {
			return f[1]
		}
	}
	t.Skip("no IPv4 nameserver off this host in /etc/resolv.conf")
	return ""
}

// runJob runs a batch/v1 Job with the cloner's image (Debian with a shell
// and coreutils), the claim "data" attached as volumeSpec says (none when
// empty), waits for it to complete and returns its log.
func runJob(t *testing.T, ns, volumeSpec, script string) string {
	t.Helper()
	if volumeSpec == "" {
		return runJobWithClaims(t, ns, "", nil, script)
	}
	return runJobWithClaims(t, ns, volumeSpec, []string{"data"}, script)
}

// runJobWithClaims is runJob with the claims listed attached, each as a
// volume of its own name.
func runJobWithClaims(t *testing.T, ns, volumeSpec string, claims []string, script string) string {
	t.Helper()
	volumes := "\n"
	if len(claims) > 0 {
		volumes = `
      volumes:`
		for _, c := range claims {
			volumes += `
        - name: ` + c + `
          persistentVolumeClaim:
            claimName: ` + c
		}
		volumes += "\n"
	}
	job := `apiVersion: batch/v1
kind: Job
metadata:
  name: writer
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: writer
          image: ` + clonerImage(t) + `
          imagePullPolicy: Never
          command: ["sh", "-c", ` + jsonString(script) + `]
          ` + volumeSpec + volumes
	out, err := kubectlIn(t, job, "apply", "-n", ns, "-f", "-")
	assert.NilError(t, err, out)
	_, err = cluster.Kubectl(testContext(t), "", "wait", "-n", ns, "job/writer", "--for=condition=Complete", "--timeout=120s")
	if err != nil {
		logs, _ := cluster.Kubectl(testContext(t), "", "logs", "-n", ns, "job/writer")
		events, _ := cluster.Kubectl(testContext(t), "", "get", "events", "-n", ns)
		t.Fatalf("job did not complete: %v\nlogs:\n%s\nevents:\n%s", err, logs, events)
	}
	return kubectl(t, "logs", "-n", ns, "job/writer")
}

// clonerImage is the reference of the cloner's image imported into the node.
func clonerImage(t *testing.T) string {
	t.Helper()
	ref := cluster.Image("datavolume-cloner")
	assert.Assert(t, ref != "", "no datavolume-cloner image")
	return ref
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
