"""The bibliography: only works whose authors, title, year and venue were checked against public records.

Each entry was checked (November 2026) against the publisher's or venue's page or an index of it: MIT Press
(Goodfellow et al.), Springer LNCS 1524 (Prechelt, DOI 10.1007/3-540-49430-8_3), JMLR 15(56) (Srivastava et
al.), Proceedings of the IEEE 86(11) (LeCun et al., DOI 10.1109/5.726791), the ICLR 2015 paper header
(Kingma and Ba), the ICML 2010 proceedings index (Nair and Hinton) and JMLR W&CP volume 9 (Glorot and
Bengio; pages omitted because they were not checked). Added December 2026 and checked the same way: the paper
header of Glorot, Bordes and Bengio (AISTATS 2011, JMLR W&CP volume 15, pages 315-323), Bridle's chapter in
the NATO ASI Series F volume 68 (Springer, 1990, DOI 10.1007/978-3-642-76153-9_28) and Bishop's textbook
(Springer, 2006).
"""

from __future__ import annotations

BIBTEX = r"""@book{goodfellow2016deep,
  author    = {Goodfellow, Ian and Bengio, Yoshua and Courville, Aaron},
  title     = {Deep Learning},
  publisher = {MIT Press},
  year      = {2016},
  isbn      = {9780262035613}
}

@incollection{prechelt1998early,
  author    = {Prechelt, Lutz},
  title     = {Early Stopping -- But When?},
  booktitle = {Neural Networks: Tricks of the Trade},
  editor    = {Orr, G. B. and M{\"u}ller, K.-R.},
  series    = {Lecture Notes in Computer Science},
  volume    = {1524},
  pages     = {55--69},
  publisher = {Springer},
  year      = {1998},
  doi       = {10.1007/3-540-49430-8_3}
}

@article{srivastava2014dropout,
  author  = {Srivastava, Nitish and Hinton, Geoffrey and Krizhevsky, Alex and Sutskever, Ilya and
             Salakhutdinov, Ruslan},
  title   = {Dropout: A Simple Way to Prevent Neural Networks from Overfitting},
  journal = {Journal of Machine Learning Research},
  volume  = {15},
  number  = {56},
  pages   = {1929--1958},
  year    = {2014}
}

@article{lecun1998gradient,
  author  = {LeCun, Yann and Bottou, L{\'e}on and Bengio, Yoshua and Haffner, Patrick},
  title   = {Gradient-Based Learning Applied to Document Recognition},
  journal = {Proceedings of the IEEE},
  volume  = {86},
  number  = {11},
  pages   = {2278--2324},
  year    = {1998},
  doi     = {10.1109/5.726791}
}

@inproceedings{kingma2015adam,
  author    = {Kingma, Diederik P. and Ba, Jimmy},
  title     = {Adam: A Method for Stochastic Optimization},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2015},
  note      = {arXiv:1412.6980}
}

@inproceedings{nair2010rectified,
  author    = {Nair, Vinod and Hinton, Geoffrey E.},
  title     = {Rectified Linear Units Improve Restricted {Boltzmann} Machines},
  booktitle = {International Conference on Machine Learning (ICML)},
  pages     = {807--814},
  year      = {2010}
}

@inproceedings{glorot2010understanding,
  author    = {Glorot, Xavier and Bengio, Yoshua},
  title     = {Understanding the Difficulty of Training Deep Feedforward Neural Networks},
  booktitle = {International Conference on Artificial Intelligence and Statistics
               (AISTATS)},
  series    = {JMLR Workshop and Conference Proceedings},
  volume    = {9},
  year      = {2010}
}

@inproceedings{glorot2011deep,
  author    = {Glorot, Xavier and Bordes, Antoine and Bengio, Yoshua},
  title     = {Deep Sparse Rectifier Neural Networks},
  booktitle = {International Conference on Artificial Intelligence and Statistics (AISTATS)},
  series    = {JMLR Workshop and Conference Proceedings},
  volume    = {15},
  pages     = {315--323},
  year      = {2011}
}

@incollection{bridle1990probabilistic,
  author    = {Bridle, John S.},
  title     = {Probabilistic Interpretation of Feedforward Classification Network Outputs, with Relationships
               to Statistical Pattern Recognition},
  booktitle = {Neurocomputing: Algorithms, Architectures and Applications},
  editor    = {Fogelman Souli{\'e}, Fran{\c{c}}oise and H{\'e}rault, Jeanny},
  series    = {NATO ASI Series F},
  volume    = {68},
  pages     = {227--236},
  publisher = {Springer},
  year      = {1990},
  doi       = {10.1007/978-3-642-76153-9_28}
}

@book{bishop2006pattern,
  author    = {Bishop, Christopher M.},
  title     = {Pattern Recognition and Machine Learning},
  publisher = {Springer},
  year      = {2006},
  isbn      = {9780387310732}
}
"""

KEYS = ("goodfellow2016deep", "prechelt1998early", "srivastava2014dropout", "lecun1998gradient",
        "kingma2015adam", "nair2010rectified", "glorot2010understanding", "glorot2011deep",
        "bridle1990probabilistic", "bishop2006pattern")
