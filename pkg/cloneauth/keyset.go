package cloneauth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// MinKeySize is the least number of bytes of a grant key: HMAC-SHA256 is
// no stronger than its key, up to the hash size.
const MinKeySize = 32

// activeKeyFile names, in a key directory, the file holding the signing key's id.
const activeKeyFile = "active"

// keyIDPattern keeps ids usable as file names and free of the token's "."
// separator.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// KeySet holds the HMAC keys of grants: one signs, all verify, so keys can
// be rotated with an overlap.
type KeySet struct {
	keys   map[string][]byte
	active string
}

// NewKeySet returns a KeySet of keys, by id, signing with the one named
// active.
func NewKeySet(active string, keys map[string][]byte) (*KeySet, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	set := &KeySet{keys: make(map[string][]byte, len(keys)), active: active}
	for id, key := range keys {
		if err := validateKey(id, key); err != nil {
			return nil, err
		}
		set.keys[id] = append([]byte(nil), key...)
	}
	if _, ok := set.keys[active]; !ok {
		return nil, fmt.Errorf("%w: active key %q is not in the set", ErrInvalidKey, active)
	}
	return set, nil
}

// ActiveKeyID is the id of the key that signs new grants.
func (s *KeySet) ActiveKeyID() string { return s.active }

// KeyIDs lists, sorted, the ids of the keys that verify grants.
func (s *KeySet) KeyIDs() []string {
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func validateKey(id string, key []byte) error {
	if !keyIDPattern.MatchString(id) {
		return fmt.Errorf("%w: key id %q: use 1 to 63 letters, digits, '-' or '_'", ErrInvalidKey, id)
	}
	if len(key) < MinKeySize {
		return fmt.Errorf("%w: key %q has %d bytes, needs at least %d", ErrInvalidKey, id, len(key), MinKeySize)
	}
	return nil
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
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading grant key: %w", err)
	}
	set, err := NewKeySet(id, map[string][]byte{id: key})
	if err != nil {
		return nil, fmt.Errorf("loading grant key %s: %w", path, err)
	}
	return set, nil
}

func loadKeyDir(dir string) (*KeySet, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("loading grant keys: %w", err)
	}
	keys := map[string][]byte{}
	var ids []string
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
		key, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("loading grant key: %w", err)
		}
		keys[name] = key
		ids = append(ids, name)
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

// GenerateKey writes a new random key named id into dir, readable by its
// owner only. It never overwrites a key, since that would void every grant
// signed with it: if the key exists the error wraps fs.ErrExist.
func GenerateKey(dir, id string) error {
	key := make([]byte, MinKeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generating grant key %q: %w", id, err)
	}
	if err := validateKey(id, key); err != nil {
		return err
	}
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
