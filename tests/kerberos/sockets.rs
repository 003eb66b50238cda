//! The socket helpers and the Kerberized mock impalad, through real TCP.
