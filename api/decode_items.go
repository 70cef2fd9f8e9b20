package api

import "fmt"

// DecodeBatchCheckItems decodes {"checks": [check, ...]} as
// DecodeBatchCheckRequest does, except that a check which is not a valid
// check request does not fail the batch: its slot in Checks is the zero
// CheckRequest and its error (wrapping ErrInvalidRequest, or
// ErrRequestTooLarge for a check over MaxCheckRequestSize) is in the same
// slot of errs. errs is nil when every check is valid. err is an error of
// the whole batch: malformed JSON (the checks cannot be told apart), not an
// object, an unknown field, more than MaxBatch checks or more than
// MaxBatchCheckRequestSize bytes.
//
// A batch of valid checks is decoded by the fast path, as
// DecodeBatchCheckRequest decodes it.
func DecodeBatchCheckItems(data []byte) (req *BatchCheckRequest, errs []error, err error) {
	req, _, errs, err = decodeBatchCheckItems(data, false)
	return req, errs, err
}

// DecodeBatchCheckItemsRaw is DecodeBatchCheckItems that also gives each
// check's JSON as the body holds it: raw[i], a slice of data, decodes
// (DecodeCheckRequest) to Checks[i]. raw is nil for a batch the fast path
// does not read (one with an invalid check, say): a caller that keeps
// requests, as the decision log does, then encodes them itself.
func DecodeBatchCheckItemsRaw(data []byte) (req *BatchCheckRequest, raw [][]byte, errs []error, err error) {
	return decodeBatchCheckItems(data, true)
}

func decodeBatchCheckItems(data []byte, withRaw bool) (*BatchCheckRequest, [][]byte, []error, error) {
	if len(data) > MaxBatchCheckRequestSize {
		return nil, nil, nil, fmt.Errorf("%w: the body is %d bytes; at most %d are allowed", ErrRequestTooLarge, len(data), MaxBatchCheckRequestSize)
	}
	if req, raw, ok := decodeBatchFast(data, withRaw); ok {
		return req, raw, nil, nil
	}
	req, errs, err := decodeBatchItems(data, true)
	return req, nil, errs, err
}
