package bus

// NewCommitterForBench is a committer of its own that stores batches of at
// least atomicMin messages atomically (a huge value: never), for the
// benchmark that compares the two ways.
func NewCommitterForBench(b *Bus, atomicMin int) *Committer {
	return &Committer{b: b, atomicMin: atomicMin}
}
