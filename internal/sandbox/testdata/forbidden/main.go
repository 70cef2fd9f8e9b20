// Command forbidden reads a file: its module imports path_open, which the
// sandbox refuses at deploy.
package main

import (
	"os"

	"github.com/aibos/kernel/guest"
)

func main() {}

func init() {
	guest.Handle(func(guest.Tick) error {
		_, err := os.ReadFile("/etc/passwd")
		return err
	})
}
