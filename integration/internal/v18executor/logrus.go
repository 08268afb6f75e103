package containerd

import "github.com/containerd/log"

// logrus stands for the logrus package moby's file calls
// (logrus.WithError(err).Errorf): containerd/log's standard entry has the
// same methods.
var logrus = log.L
