"""robust_jax: JAX/Flax training for generalisation and adversarial robustness."""
from setuptools import find_packages, setup

setup(
    name='robust_jax',
    version='0.1.0',
    description='Pure-functional JAX/Flax losses, masks, attacks and one data-parallel trainer for '
                'generalisation and adversarial robustness research.',
    packages=find_packages(include=['robust_jax', 'robust_jax.*']),
    # Supported = tested: CPython 3.11 with constraints.txt (jax 0.10.2, the newest jax for 3.11)
    # and CPython 3.12 with constraints-latest.txt (the newest versions pip resolves); .ci/run tests
    # both; a GPU host ran jax 0.11.2 with CUDA 13. Lower bounds are the oldest tested versions,
    # upper bounds the next release series, which no one has tested yet.
    python_requires='>=3.11,<3.13',
    install_requires=[
        'jax>=0.10.2,<0.13',
        'flax>=0.12.8,<0.13',
        'optax>=0.2.8,<0.3',
        'chex>=0.1.92,<0.2',
        'ml-collections>=1.1.0,<1.2',
        'orbax-checkpoint>=0.12.8,<0.13',
        'numpy>=2.4.6,<3',
        'absl-py>=2.5.1,<3',
        'tqdm>=4.70.1,<5',
        'tensorboardX>=2.6.5,<3',
        'matplotlib>=3.11.2,<4',
        # The TFDS source only (imported lazily: robust_jax and training on IDX/npz data run
        # without it, tests/test_core_install.py checks that).
        'tensorflow-datasets>=4.9.10,<5',
        'importlib-resources>=7.1.0,<8',  # used by tensorflow-datasets without declaring it
        'pillow>=13.0.0,<14',  # image decoding in tensorflow-datasets
    ],
    extras_require={
        # GPU and TPU builds of jax (README.md, "GPU and TPU hosts"): jax's own extras, which pin
        # the plugin to the installed jax; constraints-cuda.txt pins the NVIDIA libraries too.
        'cuda12': ['jax[cuda12]'],
        'cuda13': ['jax[cuda13]'],
        'tpu': ['jax[tpu]'],
        # Preparing (downloading) TFDS datasets needs TensorFlow; the CPU build never takes the GPU.
        'tfds': ['tensorflow-cpu>=2.21'],
        'test': ['pytest>=8', 'pytest-xdist>=3.6', 'hypothesis>=6.100'],
        'docs': ['pdoc>=16'],
        # PyTorch reference steps and peers (experiments/ only; never a test dependency).
        # torchattacks 3.5.1 declares requests~=2.25.1, so pip resolving this extra downgrades
        # requests to 2.25.1 (with urllib3 1.26, idna 2.10, chardet 4) and cannot use the
        # constraints files' requests 2.34.2; tensorflow-datasets still works with 2.25.1.
        'pytorch': ['torch>=2.4', 'torchattacks>=3.5'],
    },
)
