package cxkvpb

// MaxResultsPerSession is how many results the cluster's exactly-once
// table keeps per client by default: a write of seq forgets the results at
// or below seq - MaxResultsPerSession. The SDK keeps fewer seqs than this in
// flight, so a write's result cannot be pushed out while it is in flight.
const MaxResultsPerSession = 1024
