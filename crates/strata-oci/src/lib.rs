//! OCI and Docker types shared by every strata crate: digests, image references, media
//! types, descriptors, manifests, indexes and image configs. No I/O.

pub mod bytes;
pub mod digest;
pub mod media_types;
pub mod reference;
pub mod spec;
pub mod time;

pub use digest::{Digest, DigestError, Digester};
pub use reference::{AnyReference, Reference, ReferenceError};
