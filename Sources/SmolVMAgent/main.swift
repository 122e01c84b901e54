// The SmolVM guest agent: PID 1 of every sandbox.
//
// It prepares the guest (Agent+Init), finds the channel to the host
// (Channel), then serves requests (Agent, Agent+Exec, Agent+Files) until it is
// asked to shut down. Built as a static executable so it runs on any root
// file system, including a busybox-only one.
import Glibc

let agent = Agent()
agent.run()
