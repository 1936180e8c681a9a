package sluice

import (
	"fmt"
	"time"

	"github.com/sluice/sluice/clients/go/sluicev1"
)

// DecidedBy names who decided: the sidecar's sluice.v1.DecidedBy names, and this client's own
// two for a sidecar it could not reach (OnUnavailable).
type DecidedBy string

const (
	// DecidedByLease: served from budget the sidecar had already taken from the store.
	DecidedByLease DecidedBy = "LEASE"
	// DecidedByStore: decided by the store (Redis, or the sidecar's memory store).
	DecidedByStore DecidedBy = "STORE"
	// DecidedByFailOpen: the store could not answer in time and the resource fails open.
	DecidedByFailOpen DecidedBy = "FAIL_OPEN"
	// DecidedByFailClosed: the store could not answer in time and the resource fails closed.
	DecidedByFailClosed DecidedBy = "FAIL_CLOSED"
	// DecidedByLocalFallback: the store could not answer in time and the sidecar enforced its
	// local share.
	DecidedByLocalFallback DecidedBy = "LOCAL_FALLBACK"
	// DecidedByClientOpen: the sidecar could not be reached and the client grants (Open).
	DecidedByClientOpen DecidedBy = "CLIENT_OPEN"
	// DecidedByClientClosed: the sidecar could not be reached and the client denies (Closed).
	DecidedByClientClosed DecidedBy = "CLIENT_CLOSED"
)

// decidedBy is the enum value's name; a value newer than this client is its number.
func decidedBy(d sluicev1.DecidedBy) DecidedBy {
	return DecidedBy(d.String())
}

// Never is Denied.RetryAfter for a request that can never be granted (its cost exceeds a
// limit's capacity): asking again will not help.
const Never time.Duration = -1

// Denied is the error Acquire returns for a denial. Nothing was charged.
type Denied struct {
	// RetryAfter is when the same request could be granted, or Never.
	RetryAfter time.Duration
	// LimitName is the limit that denied (the one that denied longest); empty for
	// DecidedByClientClosed.
	LimitName string
	// Reason says why, in words.
	Reason string
	// DecidedBy says who denied.
	DecidedBy DecidedBy
	// Waited is the time spent in line before the denial (WithMaxWait).
	Waited time.Duration

	// cause is the gRPC error behind a denial by the client itself.
	cause error
}

func deniedBy(res *sluicev1.AcquireResponse) *Denied {
	retryAfter := Never
	if res.GetRetryAfter() != nil {
		retryAfter = res.GetRetryAfter().AsDuration()
	}
	return &Denied{
		RetryAfter: retryAfter,
		LimitName:  res.GetLimitName(),
		Reason:     res.GetReason(),
		DecidedBy:  decidedBy(res.GetDecidedBy()),
		Waited:     res.GetWaited().AsDuration(),
	}
}

func (d *Denied) Error() string {
	msg := "sluice: denied"
	if d.LimitName != "" {
		msg += " by " + d.LimitName
	}
	if d.Reason != "" {
		msg += ": " + d.Reason
	}
	switch {
	case d.RetryAfter == Never:
		return msg + " (never grantable)"
	case d.RetryAfter > 0:
		return fmt.Sprintf("%s (retry after %v)", msg, d.RetryAfter)
	}
	return msg
}

// Unwrap is the gRPC error behind a denial by the client itself (DecidedByClientClosed).
func (d *Denied) Unwrap() error {
	return d.cause
}
