package main

import "github.com/deskmail/deskmail/ingest"

// wireOutbound connects the outbound side to the pipeline.
func wireOutbound(rt *runtime, env *ingest.Env) error {
	return nil
}
