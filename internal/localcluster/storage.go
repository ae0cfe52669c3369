package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Local volumes of node01, in the `local` StorageClass of
// artifacts/local-cluster. local-path-provisioner makes a directory for each
// filesystem claim under ProvisionedVolumesDir; the functions here make
// volumes beforehand: directories, and files attached as loop devices for
// block claims, as the seed's 6.10.4 does (the provisioner makes no block
// volumes). A claim binds a matching volume made beforehand rather than a
// new one. All of it lives under the cluster's directory and goes when the
// cluster stops.

// volumeOwner is the user and group a volume's directory belongs to: CDI's
// qemu user (107), as which the cloner and VMs run, as local-path's helper
// pods make them (artifacts/local-cluster/local-path/setup). Other pods get
// in through their fsGroup, which the kubelet applies to `local` volumes.
const volumeOwner = 107

func (c *Cluster) volumesDir() string { return filepath.Join(c.cfg.Dir, "volumes") }

// ProvisionedVolumesDir holds the directories local-path-provisioner makes.
func (c *Cluster) ProvisionedVolumesDir() string { return filepath.Join(c.volumesDir(), "provisioned") }

// ProvisionedVolumePath is the directory on this host of a volume that
// local-path-provisioner made: its `spec.local.path`, when it is one of
// ProvisionedVolumesDir's.
func (c *Cluster) ProvisionedVolumePath(pv *corev1.PersistentVolume) (string, error) {
	if pv.Spec.Local == nil {
		return "", fmt.Errorf("PersistentVolume %s is not a local volume", pv.Name)
	}
	path := filepath.Clean(pv.Spec.Local.Path)
	if filepath.Dir(path) != c.ProvisionedVolumesDir() {
		return "", fmt.Errorf("PersistentVolume %s is at %s, not in %s", pv.Name, path, c.ProvisionedVolumesDir())
	}
	return path, nil
}

// AddFilesystemVolume makes a directory on the node and a PersistentVolume
// of the given capacity for it, and returns the directory. The directory is
// volumeOwner's, mode 2770: not world-writable; the set-group-ID bit keeps
// files made in it in the group.
func (c *Cluster) AddFilesystemVolume(ctx context.Context, name, capacity string) (string, error) {
	if _, err := resource.ParseQuantity(capacity); err != nil {
		return "", fmt.Errorf("capacity %q: %w", capacity, err)
	}
	dir := filepath.Join(c.volumesDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chown(dir, volumeOwner, volumeOwner); err != nil {
		return "", fmt.Errorf("giving volume %s to its pods' group: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o770|os.ModeSetgid); err != nil {
		return "", fmt.Errorf("setting the mode of volume %s: %w", dir, err)
	}
	if err := c.applyLocalPV(ctx, name, dir, capacity, "Filesystem"); err != nil {
		return "", err
	}
	return dir, nil
}

// AttachLoopDevice makes a sparse file as large as capacity and attaches it
// to the first free loop device (`losetup -f`, never a fixed one), which it
// returns. The seed fills its file with dd; a sparse file reads back the
// same zeros without writing them.
func (c *Cluster) AttachLoopDevice(ctx context.Context, name, capacity string) (string, error) {
	q, err := resource.ParseQuantity(capacity)
	if err != nil {
		return "", fmt.Errorf("capacity %q: %w", capacity, err)
	}
	if err := os.MkdirAll(c.volumesDir(), 0o755); err != nil {
		return "", err
	}
	file := filepath.Join(c.volumesDir(), name+".img")
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("creating the file behind %s: %w", name, err)
	}
	err = f.Truncate(q.Value())
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return "", fmt.Errorf("sizing %s: %w", file, err)
	}
	out, err := exec.CommandContext(ctx, "losetup", "-f", "--show", file).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("losetup -f --show %s: %w: %s", file, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// AddBlockVolume attaches a loop device of the given capacity and makes a
// `volumeMode: Block` PersistentVolume for it on the node, as the seed's
// local-block-pv10.yaml does. It returns the device.
func (c *Cluster) AddBlockVolume(ctx context.Context, name, capacity string) (string, error) {
	device, err := c.AttachLoopDevice(ctx, name, capacity)
	if err != nil {
		return "", err
	}
	if err := c.applyLocalPV(ctx, name, device, capacity, "Block"); err != nil {
		return "", err
	}
	return device, nil
}

// applyLocalPV makes a local PersistentVolume on the node for path (a
// directory or a block device), in the default StorageClass "local".
func (c *Cluster) applyLocalPV(ctx context.Context, name, path, capacity, volumeMode string) error {
	pv := fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata:
  name: %[1]s
spec:
  local:
    path: %[2]s
  capacity:
    storage: %[3]s
  volumeMode: %[4]s
  storageClassName: local
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [%[5]s]
`, name, path, capacity, volumeMode, c.cfg.NodeName)
	if _, err := c.Kubectl(ctx, pv, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("creating PersistentVolume %s: %w", name, err)
	}
	return nil
}
