// Package redact renders values that may carry credentials for logs,
// events, status and error messages: the one place that decides what of a
// URL may be shown. A URL's user information (user:password@) and its query
// string (a presigned URL's signature) are credentials; so may be its
// fragment. What remains, scheme://host/path, says which image was meant.
package redact

import (
	"net/url"
	"regexp"
)

// Unparsable stands for a URL that cannot be parsed, and so cannot be
// shown without what it may carry.
const Unparsable = "(unparsable URL)"

// URL is raw without user information, query and fragment; Unparsable if
// raw is not a URL. Never raw itself when it carries any of them.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Unparsable
	}
	return ParsedURL(u)
}

// ParsedURL is u without user information, query and fragment; u itself is
// left as it is. A nil u is "".
func ParsedURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	c.RawQuery, c.ForceQuery = "", false
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// urlInText is a URL as it appears in an error message: a scheme, "://",
// and everything up to a space or a quote.
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// URLsIn is text with every URL in it redacted as URL does: for messages
// made elsewhere (a container's termination message, a library's error)
// that may quote a URL with its credentials.
func URLsIn(text string) string {
	return urlInText.ReplaceAllStringFunc(text, URL)
}
