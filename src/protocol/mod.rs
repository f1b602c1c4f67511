//! What goes over the wire, shared by the service (which answers and sends it) and the tools
//! (which read and send it): the HTTP API's JSON, and the provider protocols. Depends only on
//! the core's values; knows nothing of storage, threads or HTTP servers.

pub mod api;
