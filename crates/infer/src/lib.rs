//! Prepared inference plans for LSTM / H-LSTM stacks and language models.
