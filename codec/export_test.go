package codec

// AssociatedData exposes the v1 associated-data encoding to the external tests, which craft envelopes by hand.
var AssociatedData = associatedData
