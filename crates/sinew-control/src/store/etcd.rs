//! The etcd store (`--store etcd:URL[,URL…]`): etcd v3 through its JSON
//! gateway. Written in a later step.
