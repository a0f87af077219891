"""The starpose_ros ROS 2 package (ament_python); also pip-installable.

The `training/` folder installs as `starpose_training` so that no generic top-level
name lands in site-packages.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'starpose_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=(
        find_packages(include=['starpose_ros', 'starpose_ros.*', 'starpose_model', 'starpose_model.*'])
        + ['starpose_training'] + [f'starpose_training.{p}' for p in find_packages('training')]
    ),
    package_dir={'starpose_training': 'training'},
    package_data={'starpose_training': ['configs/*.yaml'], 'starpose_ros': ['assets/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.py')),
        (f'share/{PACKAGE}/config', glob('config/*')),
    ],
    install_requires=['setuptools'],
    python_requires='>=3.10',
    zip_safe=True,
    maintainer='StarPose developers',
    description='STAR-Pose low-resolution video human pose estimation for ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'starpose_node = starpose_ros.node:main',
            'starpose-synth = starpose_training.synthetic.cli:main',
            'starpose-export = starpose_model.export:main',
            'starpose-model-report = starpose_model.report:main',
            'starpose-train = starpose_training.train:main',
            'starpose-eval = starpose_training.evaluate:main',
            'starpose-bag-eval = starpose_ros.bag_tools.bag_eval:main',
            'starpose-video2bag = starpose_ros.bag_tools.video2bag:main',
            'starpose-label = starpose_ros.bag_tools.label:main',
            'starpose-fetch-footage = starpose_training.real_footage:main',
            'starpose-build-engine = starpose_ros.core.backends.tensorrt_cli:main',
        ],
    },
)
