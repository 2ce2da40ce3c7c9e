//! What 4G data loggers publish over MQTT: their templates (how a logger names its fields) and the
//! decoding of a message into samples, with every problem named. The subscriber itself is
//! `sunshare::collect::mqtt`.

pub mod payload;
pub mod template;
