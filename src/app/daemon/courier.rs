//! How the daemon answers an accepted message ([`crate::app::accept::Courier`]): the instance's
//! messaging actor is poked, and the reconciler is woken only when a container must be started.

use tokio::sync::mpsc;

use super::shared::{MessagingHandle, Wake};
use crate::app::accept::Courier;

pub struct DaemonCourier<'a> {
    pub messaging: &'a MessagingHandle,
    pub reconcile: &'a mpsc::UnboundedSender<Wake>,
}

impl Courier for DaemonCourier<'_> {
    fn poke(&self, instance: &str) {
        self.messaging.poke(instance);
    }

    fn start_instances(&self) {
        let _ = self.reconcile.send(Wake::Api(None));
    }
}

/// A [`DaemonCourier`] that owns its handles, for the channels' own tasks.
pub struct OwnedCourier {
    pub messaging: MessagingHandle,
    pub reconcile: mpsc::UnboundedSender<Wake>,
}

impl Courier for OwnedCourier {
    fn poke(&self, instance: &str) {
        self.messaging.poke(instance);
    }

    fn start_instances(&self) {
        let _ = self.reconcile.send(Wake::Api(None));
    }
}
