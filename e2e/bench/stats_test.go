package bench

import (
	"math/rand/v2"
	"testing"
	"time"

	"gotest.tools/v3/assert"
)

func TestNearestRank(t *testing.T) {
	s := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	assert.Equal(t, nearestRank(s, 0.5), time.Duration(5))
	assert.Equal(t, nearestRank(s, 0.99), time.Duration(10))
	assert.Equal(t, nearestRank(s, 0), time.Duration(1))
	assert.Equal(t, nearestRank(nil, 0.5), time.Duration(0))
}

// The interval of two samples of one distribution holds zero; shifting one
// sample by 3ms moves the interval by 3ms; a heavier tail widens it.
func TestQuantileDiffInterval(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	draw := func(n int, shift time.Duration) []time.Duration {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = shift + time.Duration(rng.ExpFloat64()*float64(time.Millisecond)) + 4*time.Millisecond
		}
		return s
	}
	a, b := draw(2000, 0), draw(2000, 0)
	lo, hi := quantileDiffInterval(a, b, 0.99, 500, 1)
	assert.Assert(t, lo < 0 && hi > 0, "same distribution: [%v, %v] holds 0", lo, hi)
	assert.Assert(t, hi-lo < 3*time.Millisecond, "[%v, %v]", lo, hi)

	shifted := make([]time.Duration, len(a))
	for i, d := range a {
		shifted[i] = d + 3*time.Millisecond
	}
	slo, shi := quantileDiffInterval(shifted, b, 0.99, 500, 1)
	assert.Equal(t, slo, lo+3*time.Millisecond, "the same resamples, shifted")
	assert.Equal(t, shi, hi+3*time.Millisecond)

	p50lo, p50hi := quantileDiffInterval(a, b, 0.5, 500, 1)
	assert.Assert(t, p50hi-p50lo < hi-lo, "the median is known better than the p99: [%v, %v] vs [%v, %v]", p50lo, p50hi, lo, hi)

	lo, hi = quantileDiffInterval(nil, b, 0.99, 500, 1)
	assert.Equal(t, lo, time.Duration(0))
	assert.Equal(t, hi, time.Duration(0))
}
