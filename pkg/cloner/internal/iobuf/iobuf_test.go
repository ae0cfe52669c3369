package iobuf

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"gotest.tools/v3/assert"
)

func start(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func TestGetGivesAlignedBuffersOfTheSizeAsked(t *testing.T) {
	for _, n := range []int{1, 4096, 1 << 20, 2 << 20, 3<<20 + 5, 8 << 20} {
		b := Get(n)
		assert.Equal(t, len(b), n)
		assert.Equal(t, cap(b), n, "a caller that reslices to cap must not see more")
		assert.Equal(t, start(b)%hugePage, uintptr(0), "size %d", n)
		for i := 0; i < n; i += 4096 {
			b[i] = byte(i)
		}
		b[n-1] = 7
		Put(b)
	}
}

func TestPutBuffersAreReusedOnce(t *testing.T) {
	a := Get(5 << 20)
	Put(a)
	Put(a) // a second Put must not put it on the list twice
	b := Get(5 << 20)
	c := Get(5 << 20)
	assert.Equal(t, start(b), start(a), "the freed buffer is handed out again")
	assert.Assert(t, start(c) != start(b), "one buffer handed out twice")
	// A smaller request of the same rounded size reuses it too, at its own length.
	Put(b)
	d := Get(4<<20 + 1)
	assert.Equal(t, start(d), start(b))
	assert.Equal(t, len(d), 4<<20+1)
	PutAll([][]byte{c, d})
}

func TestPutIgnoresBuffersItDidNotMap(t *testing.T) {
	heap := make([]byte, 2<<20)
	Put(heap)
	Put(nil)
	b := Get(2 << 20)
	assert.Assert(t, start(b) != start(heap), "a heap buffer must never be handed out or unmapped")
	Put(b)
}

func TestFreeListIsBounded(t *testing.T) {
	bufs := GetN(keepBytes/(8<<20)+4, 8<<20)
	PutAll(bufs)
	pool.Lock()
	kept := pool.kept
	listed := len(pool.free[8<<20])
	pool.Unlock()
	assert.Assert(t, kept <= keepBytes, "kept %d bytes", kept)
	assert.Assert(t, listed < len(bufs), "every buffer kept: %d", listed)
	// What went beyond the bound is unmapped and forgotten, not listed.
	pool.Lock()
	defer pool.Unlock()
	for _, b := range bufs {
		_, stillMapped := pool.mapped[unsafe.SliceData(b)]
		if !stillMapped {
			return
		}
	}
	t.Fatal("no buffer was unmapped past the bound")
}

// With transparent huge pages offered (always or madvise), the kernel must
// see the buffer's mapping as eligible for them.
func TestBuffersAreEligibleForHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("transparent huge pages are off here (%q, %v): buffers use small pages", mode, err)
	}
	b := Get(4 << 20)
	defer Put(b)
	b[0] = 1
	eligible, err := thpEligible(start(b))
	assert.NilError(t, err)
	assert.Assert(t, eligible, "mapping at %#x not eligible for huge pages", start(b))
}

// thpEligible reads /proc/self/smaps for the mapping holding addr.
func thpEligible(addr uintptr) (bool, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return false, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 { // a mapping's first line
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "THPeligible:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "THPeligible:")) == "1", nil
		}
	}
	return false, fmt.Errorf("no mapping holds %#x: %v", addr, sc.Err())
}
