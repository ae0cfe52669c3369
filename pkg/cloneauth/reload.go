package cloneauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// DefaultReloadEvery is how often a watched key directory is looked at. The
// kubelet updates a mounted Secret or ConfigMap within about a minute.
const DefaultReloadEvery = 10 * time.Second

// reloader holds what was last loaded from a directory and loads it again
// when the directory's files change, keeping the last good value when a
// load fails: keys rotate without a restart.
type reloader[T any] struct {
	dir     string
	load    func(string) (*T, error)
	current atomic.Pointer[T]
	seen    [sha256.Size]byte
	log     logr.Logger
}

func newReloader[T any](dir string, load func(string) (*T, error), log logr.Logger) (*reloader[T], error) {
	r := &reloader[T]{dir: dir, load: load, log: log}
	sum, err := fingerprint(dir)
	if err != nil {
		return nil, err
	}
	v, err := load(dir)
	if err != nil {
		return nil, err
	}
	r.current.Store(v)
	r.seen = sum
	return r, nil
}

// run looks at the directory every period until ctx is done.
func (r *reloader[T]) run(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			r.reload()
		}
	}
}

// reload loads the directory again if its files changed. Only ids are
// logged, never key material.
func (r *reloader[T]) reload() {
	sum, err := fingerprint(r.dir)
	if err != nil {
		r.log.Error(err, "Reading the grant key directory; keeping the keys loaded before", "dir", r.dir)
		return
	}
	if sum == r.seen {
		return
	}
	v, err := r.load(r.dir)
	if err != nil {
		r.log.Error(err, "Loading changed grant keys; keeping the keys loaded before", "dir", r.dir)
		return
	}
	r.current.Store(v)
	r.seen = sum
	r.log.Info("Grant keys reloaded", "dir", r.dir)
}

// fingerprint is a hash of the names and contents of the directory's files,
// following links (a mounted volume swaps its "..data" link on update).
func fingerprint(dir string) ([sha256.Size]byte, error) {
	h := sha256.New()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("reading %s: %w", dir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		if len(name) > 0 && name[0] == '.' {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			// A directory, or a link mid-swap: the next look sees it settled.
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(data))
		h.Write(data)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// ReloadingKeySet signs and verifies with the keys of a directory as they
// are now.
type ReloadingKeySet struct{ r *reloader[KeySet] }

// WatchKeySet loads the private keys of dir and reloads them every period
// until ctx is done.
func WatchKeySet(ctx context.Context, dir string, every time.Duration, log logr.Logger) (*ReloadingKeySet, error) {
	r, err := newReloader(dir, loadKeyDir, log)
	if err != nil {
		return nil, err
	}
	go r.run(ctx, every)
	return &ReloadingKeySet{r: r}, nil
}

// Current is the key set loaded last.
func (k *ReloadingKeySet) Current() *KeySet { return k.r.current.Load() }

// Sign signs g with the current active key.
func (k *ReloadingKeySet) Sign(g Grant) (string, error) { return k.Current().Sign(g) }

// Verify verifies with the current keys.
func (k *ReloadingKeySet) Verify(token string, want Target, at time.Time) (Grant, error) {
	return k.Current().Verify(token, want, at)
}

// ReloadingPublicKeySet verifies with the public keys of a directory as
// they are now.
type ReloadingPublicKeySet struct{ r *reloader[PublicKeySet] }

// WatchPublicKeySet loads the public keys of dir and reloads them every
// period until ctx is done.
func WatchPublicKeySet(ctx context.Context, dir string, every time.Duration, log logr.Logger) (*ReloadingPublicKeySet, error) {
	r, err := newReloader(dir, LoadPublicKeySet, log)
	if err != nil {
		return nil, err
	}
	go r.run(ctx, every)
	return &ReloadingPublicKeySet{r: r}, nil
}

// Current is the key set loaded last.
func (k *ReloadingPublicKeySet) Current() *PublicKeySet { return k.r.current.Load() }

// Verify verifies with the current keys.
func (k *ReloadingPublicKeySet) Verify(token string, want Target, at time.Time) (Grant, error) {
	return k.Current().Verify(token, want, at)
}
