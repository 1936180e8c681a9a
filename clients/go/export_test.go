package sluice

// PermitFor is a permit with this id from c, as if c had been granted it: the tests' way to a
// permit the sidecar does not know.
func PermitFor(c *Client, id string) *Permit {
	return &Permit{PermitID: id, client: c}
}
