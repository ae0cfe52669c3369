package qcow2

// DecodeMap exposes decodeMap to the external tests.
var DecodeMap = decodeMap
