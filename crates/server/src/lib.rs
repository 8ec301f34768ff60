//! ucbridge serve: REST API, admin page, scheduler, auth, metrics, multi-node leases.
