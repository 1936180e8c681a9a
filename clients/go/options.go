package sluice

import (
	"time"

	"github.com/sluice/sluice/clients/go/sluicev1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Option configures a Client.
type Option func(*Client)

// Fallback is what Acquire gives when the sidecar cannot be reached (OnUnavailable).
type Fallback int

const (
	// Return returns the gRPC error (codes.Unavailable, or codes.DeadlineExceeded when the
	// sidecar did not answer in time). The default.
	Return Fallback = iota
	// Open grants: a Permit with DecidedBy DecidedByClientOpen and nothing to release.
	Open
	// Closed denies: a *Denied with DecidedBy DecidedByClientClosed.
	Closed
)

// OnUnavailable sets what Acquire gives when the sidecar cannot be reached or does not answer
// within the client's time. Errors the sidecar answers (INVALID_ARGUMENT, NOT_FOUND,
// RESOURCE_EXHAUSTED) are returned whatever it says.
func OnUnavailable(fallback Fallback) Option {
	return func(c *Client) { c.onUnavailable = fallback }
}

// Timeout sets how long a call whose context has no deadline may take beyond its max_wait
// before it counts as unanswered (default DefaultTimeout). A context with a deadline keeps it.
func Timeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// AcquireOption sets a field of the request Acquire sends.
type AcquireOption func(*sluicev1.AcquireRequest)

// WithCost takes n units (tokens, bytes, dollars) instead of 1.
func WithCost(n uint64) AcquireOption {
	return func(r *sluicev1.AcquireRequest) { r.Cost = n }
}

// WithMaxWait waits up to d in the sidecar for a grant (at most 300 s) instead of answering at
// once. Without a deadline on its context, the call is given d plus the client's Timeout.
func WithMaxWait(d time.Duration) AcquireOption {
	return func(r *sluicev1.AcquireRequest) { r.MaxWait = durationpb.New(d) }
}

// WithPriority orders waiting requests (higher first) and reaches capacity a resource reserves
// for priorities at or above a level.
func WithPriority(p int32) AcquireOption {
	return func(r *sluicev1.AcquireRequest) { r.Priority = p }
}

// WithLane waits in one of the resource's lanes (default: its first).
func WithLane(name string) AcquireOption {
	return func(r *sluicev1.AcquireRequest) { r.Lane = name }
}
