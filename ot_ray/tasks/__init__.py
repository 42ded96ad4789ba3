"""Stage 2: the downstream tasks (XNLI classification, XQuAD extractive QA) and their decoding."""
