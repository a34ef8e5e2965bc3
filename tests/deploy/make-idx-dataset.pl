#!/usr/bin/perl
# A tiny MNIST-layout data set (IDX, uncompressed) for the package tests:
#   make-idx-dataset.pl DIR NTRAIN NTEST
# writes DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte: 28x28 images, labels 0..9, each image
# noise plus a bright vertical band whose position is its label's (learnable in one epoch).
# Deterministic (fixed seed); perl only, so that it runs wherever dpkg does.
use strict;
use warnings;
my ($dir, $ntrain, $ntest) = @ARGV;
die "usage: make-idx-dataset.pl DIR NTRAIN NTEST\n" unless defined $ntest;
srand(12);
for my $set (["train", $ntrain], ["t10k", $ntest]) {
  my ($prefix, $n) = @$set;
  open(my $img, '>:raw', "$dir/$prefix-images-idx3-ubyte") or die "$dir: $!\n";
  open(my $lbl, '>:raw', "$dir/$prefix-labels-idx1-ubyte") or die "$dir: $!\n";
  print $img pack('NNNN', 0x00000803, $n, 28, 28);
  print $lbl pack('NN', 0x00000801, $n);
  for (1 .. $n) {
    my $label = int(rand(10));
    my @px;
    for my $row (0 .. 27) {
      for my $col (0 .. 27) {
        my $band = ($col >= 2 * $label + 4 && $col < 2 * $label + 8) ? 160 : 0;
        push @px, $band + int(rand(64));
      }
    }
    print $img pack('C*', @px);
    print $lbl pack('C', $label);
  }
  close($img) or die;
  close($lbl) or die;
}
