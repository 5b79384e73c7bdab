//! Support for the end-to-end tests: a real HTTP server that speaks the
//! agent protocol ([`protocol_server`]). It is a second, independent
//! implementation of the host side of `nasflat_shared::protocol`, with fault
//! injection, so the agent is tested against real sockets, not mocks of its
//! own code. And the other side: simulated agents ([`sim_agent`]) that
//! drive a real host, for `nasflat-loadgen` and the end-to-end tests.

pub mod protocol_server;
pub mod sim_agent;
