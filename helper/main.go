// Command steprun-artifacts moves a step's artifacts between its Pod and an S3-compatible store,
// without any tool inside the step's image and without any credential of the store: the
// operator presigns one URL per object of the attempt. One static binary, three roles, one per
// container of the step's Pod:
//
//	init    (init container, the inputs' GET URLs) copies this binary into a volume shared
//	        with the step, then downloads each input, checks its sha256 and unpacks it within
//	        the configured bounds.
//	run     (the step's container, no URL) runs the step's command, then packs each declared
//	        output (tar+gzip, streamed to disk) into the outputs volume and tells the uploader.
//	upload  (a container beside the step, the outputs' PUT URLs) waits until run says the
//	        outputs are packed, or until run is gone, and uploads them, hashing as it goes.
//
// Results and failures reach the operator through each container's termination message (at
// most 4 KiB, JSON), which the operator reads from the Pod's status.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: steprun-artifacts init|run|upload [flags]")
		os.Exit(2)
	}
	var code int
	switch os.Args[1] {
	case "init":
		code = initMain(os.Args[2:])
	case "run":
		code = runMain(os.Args[2:])
	case "upload":
		code = uploadMain(os.Args[2:])
	case "version":
		fmt.Println("steprun-artifacts 1")
	default:
		fmt.Fprintf(os.Stderr, "unknown role %q: want init, run or upload\n", os.Args[1])
		code = 2
	}
	os.Exit(code)
}
