//! The store floor: the sole owner of STATE-DIR. The event journal (read
//! from a sequence number), the sequence numbers, the state file and the
//! records of restarts under way, the locks, and the threads that write
//! them. Everything above reads and writes procward's state through here.

pub mod cursor;
pub mod journal;
mod queue;
mod read;
mod records;
pub mod state;
pub mod writer;

/// Where the store's writer threads say what they have to say about their
/// own writes (PW1012, PW1013): into the event stream, like any event.
pub type Reporter = std::sync::Arc<dyn Fn(crate::model::event::EventSpec) + Send + Sync>;
