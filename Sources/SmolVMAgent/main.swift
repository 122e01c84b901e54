// The SmolVM guest agent: PID 1 of every sandbox.
//
// It prepares the guest (Agent+Init), finds the channel to the host
// (Channel), then serves requests (Agent, Agent+Exec, Agent+Files) until it is
// asked to shut down. Built as a static executable so it runs on any root
// file system, including a busybox-only one.
import Glibc

// The kernel passes `SMOLVM_RAW=1` (no dot, so not a module parameter) to init as an environment variable.
if getpid() == 1, getenv("SMOLVM_RAW") != nil {
    RawFloor.run()
}
let agent = Agent()
agent.run()
