package cloneauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// MinKeySize is the size of a grant key's seed: an Ed25519 private key is
// made from 32 bytes.
const MinKeySize = ed25519.SeedSize

// activeKeyFile names, in a key directory, the file holding the signing key's id.
const activeKeyFile = "active"

// keyIDPattern keeps ids usable as file names and free of the token's "."
// separator.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// KeySet holds the Ed25519 private keys of grants: one signs, all verify,
// so keys can be rotated with an overlap. Only datavolume-apiserver holds
// it; the controller holds the PublicKeySet, which verifies but cannot sign.
type KeySet struct {
	keys   map[string]ed25519.PrivateKey
	active string
	public *PublicKeySet
}

// PublicKeySet holds the public keys of grants: it verifies them only.
type PublicKeySet struct {
	keys map[string]ed25519.PublicKey
}

// NewKeySet returns a KeySet of keys, by id, each an Ed25519 seed
// (MinKeySize bytes), signing with the one named active.
func NewKeySet(active string, seeds map[string][]byte) (*KeySet, error) {
	if len(seeds) == 0 {
		return nil, ErrNoKeys
	}
	set := &KeySet{keys: make(map[string]ed25519.PrivateKey, len(seeds)), active: active,
		public: &PublicKeySet{keys: make(map[string]ed25519.PublicKey, len(seeds))}}
	for id, seed := range seeds {
		if err := validateKey(id, seed); err != nil {
			return nil, err
		}
		key := ed25519.NewKeyFromSeed(seed)
		set.keys[id] = key
		set.public.keys[id] = key.Public().(ed25519.PublicKey)
	}
	if _, ok := set.keys[active]; !ok {
		return nil, fmt.Errorf("%w: active key %q is not in the set", ErrInvalidKey, active)
	}
	return set, nil
}

// NewPublicKeySet returns the PublicKeySet of keys, by id.
func NewPublicKeySet(keys map[string]ed25519.PublicKey) (*PublicKeySet, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	set := &PublicKeySet{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for id, key := range keys {
		if !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("%w: key id %q: use 1 to 63 letters, digits, '-' or '_'", ErrInvalidKey, id)
		}
		if len(key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: public key %q has %d bytes, not %d", ErrInvalidKey, id, len(key), ed25519.PublicKeySize)
		}
		set.keys[id] = append(ed25519.PublicKey(nil), key...)
	}
	return set, nil
}

// ActiveKeyID is the id of the key that signs new grants.
func (s *KeySet) ActiveKeyID() string { return s.active }

// KeyIDs lists, sorted, the ids of the keys that verify grants.
func (s *KeySet) KeyIDs() []string { return s.public.KeyIDs() }

// KeyIDs lists, sorted, the ids of the keys.
func (s *PublicKeySet) KeyIDs() []string {
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Public is the set's public half.
func (s *KeySet) Public() *PublicKeySet { return s.public }

// PEM is each public key, PEM-encoded (PKIX), by id: the files of the
// controller's key directory.
func (s *PublicKeySet) PEM() (map[string][]byte, error) {
	out := make(map[string][]byte, len(s.keys))
	for id, key := range s.keys {
		der, err := x509.MarshalPKIXPublicKey(key)
		if err != nil {
			return nil, fmt.Errorf("encoding public key %q: %w", id, err)
		}
		out[id] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	return out, nil
}

func validateKey(id string, seed []byte) error {
	if !keyIDPattern.MatchString(id) {
		return fmt.Errorf("%w: key id %q: use 1 to 63 letters, digits, '-' or '_'", ErrInvalidKey, id)
	}
	if len(seed) != MinKeySize {
		return fmt.Errorf("%w: key %q has a %d-byte seed, not %d", ErrInvalidKey, id, len(seed), MinKeySize)
	}
	return nil
}

// parsePrivateKey reads a PEM PKCS#8 Ed25519 private key file: its seed.
func parsePrivateKey(id string, data []byte) ([]byte, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: key %q is not a PEM \"PRIVATE KEY\"", ErrInvalidKey, id)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %v", ErrInvalidKey, id, err)
	}
	private, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: key %q is a %T, not Ed25519", ErrInvalidKey, id, key)
	}
	return private.Seed(), nil
}

// parsePublicKey reads a PEM PKIX Ed25519 public key file.
func parsePublicKey(id string, data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: key %q is not a PEM \"PUBLIC KEY\"", ErrInvalidKey, id)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %v", ErrInvalidKey, id, err)
	}
	public, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key %q is a %T, not Ed25519", ErrInvalidKey, id, key)
	}
	return public, nil
}

// LoadKeySet reads the keys at path: a directory laid out like a mounted
// Secret, or a single key file (see the package documentation).
func LoadKeySet(path string) (*KeySet, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("loading grant keys: %w", err)
	}
	if !info.IsDir() {
		return loadKeyFile(path)
	}
	return loadKeyDir(path)
}

func loadKeyFile(path string) (*KeySet, error) {
	id := filepath.Base(path)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading grant key: %w", err)
	}
	key, err := parsePrivateKey(id, data)
	if err != nil {
		return nil, fmt.Errorf("loading grant key %s: %w", path, err)
	}
	set, err := NewKeySet(id, map[string][]byte{id: key})
	if err != nil {
		return nil, fmt.Errorf("loading grant key %s: %w", path, err)
	}
	return set, nil
}

func loadKeyDir(dir string) (*KeySet, error) {
	files, err := keyFiles(dir)
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	var ids []string
	for id, data := range files {
		key, err := parsePrivateKey(id, data)
		if err != nil {
			return nil, fmt.Errorf("loading grant keys from %s: %w", dir, err)
		}
		keys[id] = key
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("loading grant keys from %s: %w", dir, ErrNoKeys)
	}
	active, err := activeKeyID(dir, ids)
	if err != nil {
		return nil, err
	}
	set, err := NewKeySet(active, keys)
	if err != nil {
		return nil, fmt.Errorf("loading grant keys from %s: %w", dir, err)
	}
	return set, nil
}

// LoadPublicKeySet reads a directory of public keys laid out like a mounted
// ConfigMap: each file a PEM public key, named by its id.
func LoadPublicKeySet(dir string) (*PublicKeySet, error) {
	files, err := keyFiles(dir)
	if err != nil {
		return nil, err
	}
	keys := map[string]ed25519.PublicKey{}
	for id, data := range files {
		key, err := parsePublicKey(id, data)
		if err != nil {
			return nil, fmt.Errorf("loading grant public keys from %s: %w", dir, err)
		}
		keys[id] = key
	}
	set, err := NewPublicKeySet(keys)
	if err != nil {
		return nil, fmt.Errorf("loading grant public keys from %s: %w", dir, err)
	}
	return set, nil
}

// keyFiles reads the key files of dir, by id: regular files or links to
// them, without the active file and the volume's "..data" links.
func keyFiles(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading grant keys: %w", err)
	}
	files := map[string][]byte{}
	for _, entry := range entries {
		name := entry.Name()
		if strings.HasPrefix(name, ".") || name == activeKeyFile {
			continue
		}
		path := filepath.Join(dir, name)
		// Stat, not the entry's type: Secret volumes link their files.
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("loading grant key: %w", err)
		}
		if info.IsDir() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("loading grant key: %w", err)
		}
		files[name] = data
	}
	return files, nil
}

// activeKeyID is the id in the directory's active file or, without one,
// the lexically last of ids.
func activeKeyID(dir string, ids []string) (string, error) {
	content, err := os.ReadFile(filepath.Join(dir, activeKeyFile))
	switch {
	case err == nil:
		return strings.TrimSpace(string(content)), nil
	case errors.Is(err, fs.ErrNotExist):
		sort.Strings(ids)
		return ids[len(ids)-1], nil
	default:
		return "", fmt.Errorf("reading the active grant key id: %w", err)
	}
}

// GenerateKey writes a new random Ed25519 private key (PEM, PKCS#8) named
// id into dir, readable by its owner only. It never overwrites a key, since
// that would void every grant signed with it: if the key exists the error
// wraps fs.ErrExist.
func GenerateKey(dir, id string) error {
	if !keyIDPattern.MatchString(id) {
		return fmt.Errorf("%w: key id %q: use 1 to 63 letters, digits, '-' or '_'", ErrInvalidKey, id)
	}
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generating grant key %q: %w", id, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return fmt.Errorf("encoding grant key %q: %w", id, err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("generating grant key %q: %w", id, err)
	}
	path := filepath.Join(dir, id)
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("generating grant key: %w", err)
	}
	_, err = file.Write(key)
	if closeErr := file.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		os.Remove(path) // a short key would fail every later load
		return fmt.Errorf("writing grant key %s: %w", path, err)
	}
	return nil
}
