"""The fused row ops, one file each beside its kernel (kernels/<op>.cu): its
NumPy twin and its CUDA launcher (same signatures, same results), its
Function and its public function; rows.py holds the one CPU/GPU switch and
the row statistics the twins share."""
