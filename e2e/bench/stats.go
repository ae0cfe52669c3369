package bench

import (
	"math/rand/v2"
	"slices"
	"time"
)

// nearestRank returns the q-quantile of sorted samples, nearest rank.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(q*float64(n)+0.999999) - 1
	return sorted[min(max(rank, 0), n-1)]
}

// quantileDiffInterval bootstraps the difference of the q-quantiles of two
// samples (a minus b): it resamples each with replacement rounds times
// and returns the central 95% of the differences. A p99 of a few thousand
// creates rests on its few dozen slowest, so one run's difference can be
// off by milliseconds; the interval says by how much.
func quantileDiffInterval(a, b []time.Duration, q float64, rounds int, seed uint64) (lo, hi time.Duration) {
	if len(a) == 0 || len(b) == 0 || rounds <= 0 {
		return 0, 0
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ra, rb := make([]time.Duration, len(a)), make([]time.Duration, len(b))
	diffs := make([]time.Duration, rounds)
	for i := range diffs {
		for j := range ra {
			ra[j] = a[rng.IntN(len(a))]
		}
		for j := range rb {
			rb[j] = b[rng.IntN(len(b))]
		}
		slices.Sort(ra)
		slices.Sort(rb)
		diffs[i] = nearestRank(ra, q) - nearestRank(rb, q)
	}
	slices.Sort(diffs)
	return nearestRank(diffs, 0.025), nearestRank(diffs, 0.975)
}
