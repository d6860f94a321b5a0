//! Event schema evolution (DESIGN §2): the upcasters that bring an event stored at an older
//! `event_version` to the shape its type has now.
//!
//! There is one list. The command bus loads aggregates through it (cqrs-es's `with_upcasters`) and every
//! reader of the log (the projector, rebuilds, as-of folds, the relay and the sagas) reads events through
//! it, so an event stored at an older version is understood the same way everywhere. Nothing needs one yet:
//! every event type is still at its first version, `1.0`. A change to an event's shape bumps its
//! `event_version` and adds an upcaster from the previous version here.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};

/// Every upcaster, oldest first.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
}

/// Runs `event` through each upcaster that takes its type and version, in order.
pub fn upcast(upcasters: &[Box<dyn EventUpcaster>], mut event: SerializedEvent) -> SerializedEvent {
    for upcaster in upcasters {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event
}
