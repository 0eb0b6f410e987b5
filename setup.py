"""robust_jax: JAX/Flax training for generalisation and adversarial robustness."""
from setuptools import find_packages, setup

setup(
    name='robust_jax',
    version='0.1.0',
    description='Pure-functional JAX/Flax losses, masks, attacks and one data-parallel trainer for '
                'generalisation and adversarial robustness research.',
    packages=find_packages(include=['robust_jax', 'robust_jax.*']),
    python_requires='>=3.11',
    # Lower bounds; constraints.txt pins the exact versions tested together.
    install_requires=[
        'jax>=0.10.2',
        'flax>=0.12.8',
        'optax>=0.2.8',
        'chex>=0.1.92',
        'ml-collections>=1.1.0',
        'orbax-checkpoint>=0.12.8',
        'tensorflow-datasets>=4.9.10',
        'importlib-resources>=6',  # used by tensorflow-datasets without declaring it
        'pillow>=10',  # image decoding in tensorflow-datasets
        'absl-py>=2.1',
        'numpy>=2.0',
        'tqdm>=4.66',
        'tensorboardX>=2.6',
        'matplotlib>=3.8',
    ],
    extras_require={
        # Preparing (downloading) TFDS datasets needs TensorFlow; the CPU build never takes the GPU.
        'tfds': ['tensorflow-cpu>=2.21'],
        'test': ['pytest>=8', 'pytest-xdist>=3.6', 'hypothesis>=6.100'],
        'docs': ['pdoc>=16'],
    },
)
