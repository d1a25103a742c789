// HostArray<T>: an owned, 64-byte aligned, uninitialised array of trivially copyable T whose
// capacity only grows. Output structs hold HostArrays so that a caller who reuses the same
// output struct across calls pays no allocation or page faults on the hot path.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace epcomm::ep {

template <typename T>
class HostArray {
  static_assert(std::is_trivially_copyable_v<T>, "HostArray holds plain data");

 public:
  HostArray() = default;
  explicit HostArray(std::size_t n) { resize(n); }
  ~HostArray() { std::free(data_); }
  HostArray(HostArray&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)) {}
  HostArray& operator=(HostArray&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  HostArray(const HostArray& o) : HostArray() {
    resize(o.size_);
    if (size_) std::memcpy(data_, o.data_, size_ * sizeof(T));
  }
  HostArray& operator=(const HostArray& o) {
    if (this != &o) {
      resize(o.size_);
      if (size_) std::memcpy(data_, o.data_, size_ * sizeof(T));
    }
    return *this;
  }

  // New elements are uninitialised; existing ones up to min(old, n) are kept.
  void resize(std::size_t n) {
    if (n > capacity_) {
      const std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
      T* grown = static_cast<T*>(std::aligned_alloc(64, bytes));
      if (!grown) throw std::bad_alloc();
      if (size_) std::memcpy(grown, data_, size_ * sizeof(T));
      std::free(data_);
      data_ = grown;
      capacity_ = n;
    }
    size_ = n;
  }
  void assign(std::size_t n, const T& value) {
    resize(n);
    for (std::size_t i = 0; i < n; ++i) data_[i] = value;
  }
  void clear() { size_ = 0; }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace epcomm::ep
