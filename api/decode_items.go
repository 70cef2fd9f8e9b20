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
	if len(data) > MaxBatchCheckRequestSize {
		return nil, nil, fmt.Errorf("%w: the body is %d bytes; at most %d are allowed", ErrRequestTooLarge, len(data), MaxBatchCheckRequestSize)
	}
	if req, ok := decodeBatchFast(data); ok {
		return req, nil, nil
	}
	return decodeBatchItems(data, true)
}
