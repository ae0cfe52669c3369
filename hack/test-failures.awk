# Prints what the failed tests of a `go test -v` log said, test by test: the
# lines between a "=== RUN|CONT|NAME" header of a failed test and the next
# header. Run it over the log twice: awk -f hack/test-failures.awk LOG LOG.
FNR == NR {
	if (match($0, /^[ \t]*--- FAIL: [^ ]+/)) {
		name = substr($0, RSTART, RLENGTH)
		sub(/^[ \t]*--- FAIL: /, "", name)
		failed[name] = 1
	}
	next
}
/^=== (RUN|CONT|NAME|PAUSE) / { current = $3; next }
/^(--- |PASS|FAIL|ok )/ { next }
current in failed { print current ": " $0 }
