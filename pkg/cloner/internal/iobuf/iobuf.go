// Package iobuf hands out the large buffers that bulk I/O cycles through,
// backed by transparent huge pages where the kernel offers them.
//
// A fresh buffer costs a page fault per 4 KiB page on first touch. On the
// virtual machines measured (shadow page tables) that fault costs 12-20
// µs, so the three 8 MiB buffers of a clone took 100 ms to touch, a fifth
// of a 256 MiB clone. Backed by 2 MiB pages, the same first touch took
// 6 ms. Huge pages the host has not backed yet cost more: 64 MiB took
// 138 ms in a new process, still below the 200 ms of small pages, and
// 4 ms when touched again. Buffers go back to a free list for the next Get
// of the same size; one is unmapped only when the list is full, never
// while a caller could still hold it.
package iobuf

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page with 4 KiB base pages
// (x86-64, arm64).
const hugePage = 2 << 20

// keepBytes bounds what the free list holds; beyond it Put unmaps.
const keepBytes = 256 << 20

var pool = struct {
	sync.Mutex
	free   map[int][][]byte   // mapped buffers by size
	mapped map[*byte]*mapping // every buffer mapped here, by its start
	kept   int                // bytes in free
}{free: map[int][][]byte{}, mapped: map[*byte]*mapping{}}

type mapping struct {
	size int
	free bool // in the free list: a second Put must not add it again
}

// Get returns a buffer of n > 0 bytes (and capacity n), aligned to a page
// at least (fit for O_DIRECT), with unspecified contents: it need not read
// as zeros.
func Get(n int) []byte {
	size := roundUp(n)
	pool.Lock()
	defer pool.Unlock()
	if list := pool.free[size]; len(list) > 0 {
		b := list[len(list)-1]
		pool.free[size] = list[:len(list)-1]
		pool.kept -= size
		pool.mapped[&b[0]].free = false
		return b[:n:n]
	}
	b, err := mapHuge(size)
	if err != nil {
		return make([]byte, n) // the Go heap still works, at 4 KiB pages
	}
	pool.mapped[&b[0]] = &mapping{size: size}
	return b[:n:n]
}

// Put gives back a buffer that came from Get; the caller must not touch it
// afterwards. Buffers from the heap fallback are left to the GC, and a
// buffer given back twice is taken once.
func Put(b []byte) {
	if cap(b) == 0 {
		return
	}
	start := &b[:1][0]
	pool.Lock()
	defer pool.Unlock()
	m, ok := pool.mapped[start]
	if !ok || m.free {
		return
	}
	if pool.kept+m.size > keepBytes {
		delete(pool.mapped, start)
		_ = unix.MunmapPtr(unsafe.Pointer(start), uintptr(m.size))
		return
	}
	m.free = true
	pool.free[m.size] = append(pool.free[m.size], unsafe.Slice(start, m.size))
	pool.kept += m.size
}

func roundUp(n int) int {
	return max((n+hugePage-1)/hugePage*hugePage, hugePage)
}

// mapHuge maps size bytes (a multiple of hugePage) at a huge-page-aligned
// address and asks for huge pages there. The kernel falls back to small
// pages when it has no huge page free or transparent huge pages are off.
func mapHuge(size int) ([]byte, error) {
	// Over-map by one huge page, then unmap the unaligned head and the tail.
	length := uintptr(size + hugePage)
	p, err := unix.MmapPtr(-1, 0, nil, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	head := (hugePage - uintptr(p)%hugePage) % hugePage
	if head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	start := unsafe.Add(p, head)
	if tail := length - head - uintptr(size); tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(start, size), tail)
	}
	b := unsafe.Slice((*byte)(start), size)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b, nil
}

// GetN returns count buffers of n bytes each.
func GetN(count, n int) [][]byte {
	bufs := make([][]byte, count)
	for i := range bufs {
		bufs[i] = Get(n)
	}
	return bufs
}

// PutAll gives back every buffer of bufs.
func PutAll(bufs [][]byte) {
	for _, b := range bufs {
		Put(b)
	}
}
