//go:build !linux

package main

import (
	"errors"
	"time"
)

type ticker struct{}

func newTicker(time.Duration) (*ticker, error) { return nil, errors.New("no timerfd") }
func (*ticker) wait() (int, error)             { return 0, errors.New("no timerfd") }
func (*ticker) stop()                          {}
