"""The fused row ops, one file each: logsumexp, softmax (softmax and
log_softmax), cross_entropy, linear_cross_entropy, and the index check
(indices).  Each file holds its NumPy twin and its CUDA launcher (same
signatures, same results), its Function and its public function; rows.py
holds the one CPU/GPU switch and the row statistics the twins share."""
