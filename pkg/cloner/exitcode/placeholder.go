// Package exitcode: placeholder until the cloner-contract branch lands. DELETE ON MERGE.
package exitcode

import "encoding/json"

const (
	Success      = 0
	Retryable    = 1
	Usage        = 2
	Permanent    = 3
	NeedsScratch = 4
)

type Summary struct {
	Outcome    string `json:"outcome"`
	ExitCode   int    `json:"exitCode"`
	Reason     string `json:"reason"`
	Message    string `json:"message"`
	Bytes      int64  `json:"bytes"`
	TargetSize int64  `json:"targetSize"`
}

func Parse(s string) (*Summary, error) {
	var out Summary
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	return &out, nil
}
