package format

/*
#cgo LDFLAGS: -llzma
#include <lzma.h>
#include <stdlib.h>

// dv_xz_new starts a threaded .xz decoder as xz(1) -d does: concatenated
// streams, errors reported as soon as a thread finds them.
static lzma_ret dv_xz_new(lzma_stream *s, uint32_t threads, uint64_t memlimit_threading, uint64_t memlimit_stop) {
	lzma_mt mt = {0};
	mt.flags = LZMA_CONCATENATED | LZMA_FAIL_FAST;
	mt.threads = threads;
	mt.timeout = 0;
	mt.memlimit_threading = memlimit_threading;
	mt.memlimit_stop = memlimit_stop;
	lzma_stream init = LZMA_STREAM_INIT;
	*s = init;
	return lzma_stream_decoder_mt(s, &mt);
}

// dv_xz_code runs the decoder over in and out. The buffers belong to the
// caller (Go memory): the stream forgets them before returning, as
// liblzma allows, so C never keeps a Go pointer.
static lzma_ret dv_xz_code(lzma_stream *s, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                           int finish, size_t *consumed, size_t *produced) {
	s->next_in = in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	lzma_ret ret = lzma_code(s, finish ? LZMA_FINISH : LZMA_RUN);
	*consumed = in_len - s->avail_in;
	*produced = out_len - s->avail_out;
	s->next_in = NULL;
	s->avail_in = 0;
	s->next_out = NULL;
	s->avail_out = 0;
	return ret;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"unsafe"
)

// xzThreadsMemory bounds the memory of the threaded decoder: a stream that
// would need more (large blocks, as xz -9 -T0 writes) is decoded by one
// thread, so the cloner's peak RSS stays far under its 256 MiB budget.
const xzThreadsMemory = 128 << 20

// XzMemoryLimit bounds the decoder's memory even in one thread: a stream's
// block header chooses the dictionary size, up to 4 GiB, and the decoder
// allocates it before any data. Every xz preset (-9e: a 64 MiB dictionary,
// 65 MiB to decode) fits.
const XzMemoryLimit = 128 << 20

// ErrMemoryLimit reports a compressed stream that needs more memory to
// decode than the cloner grants it (an xz dictionary over XzMemoryLimit).
var ErrMemoryLimit = errors.New("decoding needs too much memory")

// xzInput is how much compressed data one call into liblzma takes.
const xzInput = 1 << 20

// xzReader decodes .xz with liblzma in this process: the same code as the
// xz tool, its threads decoding the blocks of a multi-block stream (what
// xz -T0 writes) in parallel, without the two pipes and the 8 KiB writes
// an xz child process costs.
type xzReader struct {
	ctx    context.Context
	src    io.Reader
	stream *C.lzma_stream // C memory: liblzma keeps pointers in it
	in     []byte
	inPos  int
	inEnd  int
	srcEOF bool
	err    error // sticky: io.EOF once the stream ended
}

func newXZ(ctx context.Context, r io.Reader) (io.ReadCloser, error) {
	stream := (*C.lzma_stream)(C.calloc(1, C.size_t(unsafe.Sizeof(C.lzma_stream{}))))
	if stream == nil {
		return nil, errors.New("decompressing xz: out of memory")
	}
	threads := max(runtime.GOMAXPROCS(0), 1)
	if ret := C.dv_xz_new(stream, C.uint32_t(threads), C.uint64_t(xzThreadsMemory), C.uint64_t(XzMemoryLimit)); ret != C.LZMA_OK {
		C.free(unsafe.Pointer(stream))
		return nil, fmt.Errorf("decompressing xz: starting the decoder: %s", lzmaError(ret))
	}
	return &xzReader{ctx: ctx, src: r, stream: stream, in: make([]byte, xzInput)}, nil
}

func (x *xzReader) Read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	if x.stream == nil {
		return 0, errors.New("decompressing xz: read after close")
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if err := x.ctx.Err(); err != nil {
			return 0, err
		}
		if x.inPos == x.inEnd && !x.srcEOF {
			n, err := x.src.Read(x.in)
			x.inPos, x.inEnd = 0, n
			if errors.Is(err, io.EOF) {
				x.srcEOF = true
			} else if err != nil {
				x.err = err
				return 0, err
			}
		}
		finish := x.srcEOF && x.inPos == x.inEnd
		consumed, produced, ret := x.code(x.in[x.inPos:x.inEnd], p, finish)
		x.inPos += consumed
		switch {
		case ret == C.LZMA_STREAM_END:
			x.err = io.EOF
			if produced > 0 {
				return produced, nil
			}
			return 0, io.EOF
		case ret == C.LZMA_OK:
			if produced > 0 {
				return produced, nil
			}
		case ret == C.LZMA_BUF_ERROR && !finish:
			// No progress without more input: read some.
		case ret == C.LZMA_MEMLIMIT_ERROR:
			x.err = fmt.Errorf("decompressing xz: %w: the stream's dictionary needs more than the %d MiB allowed (every preset up to xz -9e fits: recompress with one)",
				ErrMemoryLimit, XzMemoryLimit>>20)
			if produced > 0 {
				return produced, nil
			}
			return 0, x.err
		default:
			x.err = fmt.Errorf("decompressing xz: %s", lzmaError(ret))
			if produced > 0 {
				return produced, nil
			}
			return 0, x.err
		}
	}
}

// code hands in and out to liblzma for one call; cgo keeps them in place
// for its duration, and C keeps no pointer to them afterwards.
func (x *xzReader) code(in, out []byte, finish bool) (consumed, produced int, ret C.lzma_ret) {
	var inPtr *C.uint8_t
	if len(in) > 0 {
		inPtr = (*C.uint8_t)(unsafe.Pointer(&in[0]))
	}
	var c, o C.size_t
	fin := C.int(0)
	if finish {
		fin = 1
	}
	ret = C.dv_xz_code(x.stream, inPtr, C.size_t(len(in)), (*C.uint8_t)(unsafe.Pointer(&out[0])), C.size_t(len(out)), fin, &c, &o)
	return int(c), int(o), ret
}

// Close frees the decoder and its threads.
func (x *xzReader) Close() error {
	if x.stream != nil {
		C.lzma_end(x.stream)
		C.free(unsafe.Pointer(x.stream))
		x.stream = nil
	}
	return nil
}

// lzmaError says what a liblzma result means, in xz(1)'s words.
func lzmaError(ret C.lzma_ret) string {
	switch ret {
	case C.LZMA_MEM_ERROR:
		return "out of memory"
	case C.LZMA_MEMLIMIT_ERROR:
		return "memory usage limit reached"
	case C.LZMA_FORMAT_ERROR:
		return "file format not recognized"
	case C.LZMA_OPTIONS_ERROR:
		return "unsupported options"
	case C.LZMA_DATA_ERROR:
		return "compressed data is corrupt"
	case C.LZMA_BUF_ERROR:
		return "unexpected end of input"
	case C.LZMA_PROG_ERROR:
		return "internal error (bug)"
	}
	return fmt.Sprintf("liblzma error %d", int(ret))
}
