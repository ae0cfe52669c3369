package readahead_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"gotest.tools/v3/assert"

	"github.com/datavolume/datavolume/pkg/cloner/internal/readahead"
)

// counter fills each piece with its number and says it goes at 10 × that.
func counter(pieces int, last error) (readahead.FillFunc, *atomic.Int64) {
	var calls atomic.Int64
	return func(buf []byte) (int, int64, error) {
		i := calls.Add(1) - 1
		if int(i) >= pieces {
			return 0, 0, errors.New("fill called after the end")
		}
		buf[0] = byte(i)
		if int(i) == pieces-1 {
			return 1, 10 * i, last
		}
		return 1, 10 * i, nil
	}, &calls
}

// Pieces reach use in order, the one that comes with io.EOF included.
func TestPiecesInOrder(t *testing.T) {
	fill, _ := counter(50, io.EOF)
	var got []int64
	err := readahead.Pieces(context.Background(), 3, 4096, fill, func(buf []byte, off int64) error {
		assert.Equal(t, int64(buf[0])*10, off)
		got = append(got, off)
		return nil
	}, func() { t.Error("abort called on success") })
	assert.NilError(t, err)
	assert.Equal(t, len(got), 50)
	for i, off := range got {
		assert.Equal(t, off, int64(10*i))
	}
}

// A failure from fill, from use or from ctx ends Pieces with that error,
// calls abort and never hands the failed piece to use.
func TestPiecesFailures(t *testing.T) {
	errFill, errUse := errors.New("fill failed"), errors.New("use failed")
	for _, tc := range []struct {
		name    string
		fillErr error
		useErr  error
		cancel  bool
		want    error
	}{
		{name: "fill", fillErr: errFill, want: errFill},
		{name: "use", useErr: errUse, want: errUse},
		{name: "context", cancel: true, want: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			last := io.EOF
			if tc.fillErr != nil {
				last = tc.fillErr
			}
			fill, _ := counter(5, last)
			aborted := 0
			used := 0
			err := readahead.Pieces(ctx, 2, 4096, fill, func(buf []byte, off int64) error {
				used++
				if tc.cancel {
					cancel()
				}
				return tc.useErr
			}, func() { aborted++ })
			assert.ErrorIs(t, err, tc.want)
			assert.Equal(t, aborted, 1)
			switch {
			case tc.fillErr != nil:
				assert.Equal(t, used, 4, "the piece that came with the error is not used")
			default:
				assert.Equal(t, used, 1)
			}
		})
	}
}
