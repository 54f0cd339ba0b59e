//! Test certificates: the shared ones of `holdfast-tls` (made with rcgen
//! when a test runs), and the simulator's TLS settings built from them.

#[allow(unused_imports)]
pub use holdfast_tls::pki::{Pki, CLIENT_SUBJECT, STRANGER_SUBJECT};

pub trait SimTlsOf {
    fn sim_tls(&self, with_ca: bool) -> holdfast_sim::SimTls;
}

impl SimTlsOf for Pki {
    fn sim_tls(&self, with_ca: bool) -> holdfast_sim::SimTls {
        holdfast_sim::SimTls {
            cert_key_pem: self.server_pem.clone(),
            ca_pem: with_ca.then(|| self.ca_pem.clone()),
        }
    }
}
